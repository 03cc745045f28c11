// idlegrid browser provider: one connection to the gateway's provider
// WebSocket, speaking the protocol of docs/protocol.md as the native agent
// (internal/provider) does — handshake, jobs relayed to Ollama, chunks,
// receipts, cancel, pause/resume, heartbeats — and reconnecting with
// full-jitter backoff when the connection drops.

import * as codec from "./codec.js";
import * as keystore from "./keystore.js";
import { OllamaError, generate } from "./ollama.js";

const enc = new TextEncoder();
const MIN_BACKOFF = 250;
const MAX_BACKOFF = 30000;
// NOT_ADMITTED is protocol.StatusNotAdmitted: the gateway refuses this
// key (not registered or staked on its ledger, or jailed). Its owner must
// act first, so the page says so and tries again only after REFUSED_RETRY.
const NOT_ADMITTED = 4003;
const REFUSED_RETRY = 60000;
const MAX_ID = 128;
const MAX_TEXT = 4096;

// ProtocolError closes the connection: the gateway broke the protocol.
class ProtocolError extends Error {}

// checkTerms refuses to sign for terms this provider did not offer (the
// native agent's session.checkTerms). It returns [code, message] or null.
export function checkTerms(hello, models, job) {
  const t = job.terms;
  if (t.chain_id !== hello.chain_id || String(t.gateway).toLowerCase() !== String(hello.gateway_key).toLowerCase()) {
    return ["bad_request", "job terms name another chain or gateway than the handshake"];
  }
  if (t.model !== job.request.model) return ["bad_request", "job terms name another model than the request"];
  if (!codec.validAddress(t.consumer)) return ["bad_request", "job terms have an invalid consumer address"];
  const m = models.find((x) => x.name === t.model);
  if (!m) return ["model_not_found", `model ${JSON.stringify(t.model)} is not offered by this provider`];
  if (m.digest !== t.model_digest) return ["model_not_found", `model ${JSON.stringify(m.name)} is served with digest ${m.digest}, not ${t.model_digest}`];
  if (BigInt(t.price_per_mtok_in) < BigInt(m.price_in) || BigInt(t.price_per_mtok_out) < BigInt(m.price_out)) {
    return ["bad_request", "job terms price below this provider's floor"];
  }
  return null;
}

function validJob(j) {
  return (
    j && typeof j.id === "string" && j.id.length > 0 && enc.encode(j.id).length <= MAX_ID &&
    j.terms && typeof j.terms === "object" && j.terms.request_id === j.id &&
    j.request && (j.request.kind === "chat" || j.request.kind === "generate") && typeof j.request.model === "string" && j.request.model !== ""
  );
}

function clip(s) {
  s = String(s);
  while (enc.encode(s).length > MAX_TEXT) s = s.slice(0, Math.floor(s.length * 0.9));
  return s.toWellFormed();
}

// closeReason fits a close reason in the 123 bytes WebSocket allows.
function closeReason(s) {
  s = clip(s);
  while (enc.encode(s).length > 120) s = s.slice(0, -1);
  return s.toWellFormed();
}

// Provider serves jobs for one identity. It dispatches "state", "job",
// "stats" and "unreachable" events (CustomEvent detail).
export class Provider extends EventTarget {
  constructor({ url, identity, ollama, models, slots = 1, agentVersion = "idlegrid-browser/1" }) {
    super();
    this.url = url;
    this.id = identity;
    this.ollama = ollama;
    this.models = models; // [{name, digest, quantization, family, parameter_size, price_in, price_out}] (prices BigInt)
    this.slots = slots;
    this.agentVersion = agentVersion;
    this.stopped = true;
    this.ws = null;
    this.jobs = new Map();
    this.pauses = new Map(); // reason kind → text; paused while not empty
    this.stats = { served: 0, failed: 0, tokens: 0n, earned: 0n };
    this.backoff = MIN_BACKOFF;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  state(state, message = "") {
    this.currentState = state;
    this.emit("state", { state, message });
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.ws) this.ws.close(1000, "provider stopped by its owner");
    this.state("stopped");
  }

  get paused() {
    return this.pauses.size > 0;
  }

  // pause stops new jobs for a reason kind ("manual", "hidden"); running
  // jobs finish. resume lifts that kind; the gateway hears of the change at
  // once.
  pause(kind, reason) {
    const was = this.paused;
    this.pauses.set(kind, reason);
    if (!was) this.sendState();
  }

  resume(kind) {
    if (!this.pauses.delete(kind) || this.paused) return;
    this.sendState();
  }

  pauseReason() {
    return Array.from(this.pauses.values()).join("; ");
  }

  sendState() {
    if (this.welcomed) {
      this.send(this.paused ? { type: "pause", pause: { reason: clip(this.pauseReason()) } } : { type: "resume" });
    }
    this.emit("stats", this.snapshot());
  }

  snapshot() {
    return { ...this.stats, running: this.jobs.size, paused: this.paused, reason: this.pauseReason() };
  }

  capabilities() {
    return {
      models: this.models.map((m) => ({
        name: m.name, digest: m.digest, backend_digest: m.backend_digest || undefined, quantization: m.quantization || undefined, family: m.family || undefined,
        parameter_size: m.parameter_size || undefined, price_per_mtok_in: BigInt(m.price_in), price_per_mtok_out: BigInt(m.price_out),
      })),
      slots: this.slots,
      hardware: { os: "browser" },
      agent_version: this.agentVersion,
    };
  }

  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) throw new Error("not connected to the gateway");
    this.ws.send(codec.stringify(msg) + "\n");
    this.lastSent = Date.now();
  }

  connect() {
    this.state("connecting");
    this.welcomed = false;
    this.hello = null;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch (err) {
      this.state("stopped", `cannot open ${this.url}: ${err.message}`);
      this.stopped = true;
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => {
      if (ws !== this.ws) return;
      this.lastRecv = Date.now();
      if (typeof ev.data !== "string") return this.protocolError("binary frames are not part of the protocol");
      // Messages are handled one after the other, in frame order.
      this.queue = (this.queue || Promise.resolve()).then(() => this.frame(ws, ev.data));
    };
    ws.onclose = (ev) => this.closed(ws, ev);
    ws.onerror = () => {}; // onclose follows with the details
  }

  async frame(ws, data) {
    for (const line of data.split("\n")) {
      if (ws !== this.ws || !line.trim()) continue;
      let m;
      try {
        m = codec.parseLine(line);
        await this.handle(m);
      } catch (err) {
        // A message that does not parse or fit the protocol, or a reply
        // that cannot be sent: this connection is done either way.
        return this.protocolError(err.message || String(err));
      }
    }
  }

  protocolError(reason) {
    // Browsers may not send close code 1008 (policy violation), which the
    // native ends use; 4008 says the same in the range pages may use.
    if (this.ws) this.ws.close(4008, closeReason(`protocol error: ${reason}`));
  }

  async handle(m) {
    if (!m || typeof m !== "object") throw new ProtocolError("message is not an object");
    if (!this.hello) {
      if (m.type !== "hello" || !m.hello) throw new ProtocolError(`expected hello, got ${m.type}`);
      return this.answerHello(m.hello);
    }
    if (!this.welcomed) {
      if (m.type !== "welcome" || !m.welcome || !(m.welcome.heartbeat_ms > 0)) throw new ProtocolError(`expected welcome, got ${m.type}`);
      return this.welcome(m.welcome.heartbeat_ms);
    }
    switch (m.type) {
      case "job":
        if (!validJob(m.job)) throw new ProtocolError("malformed job");
        this.startJob(m.job);
        return;
      case "cancel": {
        const j = m.cancel && this.jobs.get(m.cancel.id);
        if (j) j.controller.abort("cancelled");
        return;
      }
      case "ping":
        if (!m.ping) throw new ProtocolError("ping without its payload");
        this.send({ type: "pong", ping: { seq: m.ping.seq } });
        return;
      case "pong":
        return;
      default:
        throw new ProtocolError(`unexpected ${String(m.type).slice(0, 64)} from gateway`);
    }
  }

  async answerHello(h) {
    // Both ends speak the older of their versions, as the native agent
    // does: a version-1 gateway gets no checkpoints.
    if (!Number.isInteger(h.protocol_version) || h.protocol_version < codec.MIN_PROTOCOL_VERSION) {
      this.stopped = true; // retrying cannot fix this
      this.ws.close(1000, "protocol version mismatch");
      this.state("stopped", `the gateway speaks protocol version ${h.protocol_version}, this page ${codec.MIN_PROTOCOL_VERSION} to ${codec.PROTOCOL_VERSION}: update the gateway`);
      return;
    }
    this.version = Math.min(h.protocol_version, codec.PROTOCOL_VERSION);
    let nonce, gateway;
    try {
      nonce = codec.fromBase64(h.nonce);
      gateway = codec.fromHex(h.gateway_key, 32);
    } catch {
      throw new ProtocolError("hello: bad nonce or gateway key");
    }
    if (nonce.length !== 32 || typeof h.chain_id !== "string" || !h.chain_id) throw new ProtocolError("hello: bad nonce or chain id");
    this.hello = h;
    const signature = await keystore.sign(this.id, codec.authBytes(nonce, gateway, h.chain_id));
    this.send({
      type: "auth",
      auth: { provider_key: this.id.publicHex, signature: codec.toHex(signature), protocol_version: this.version, capabilities: this.capabilities() },
    });
  }

  welcome(heartbeatMs) {
    this.welcomed = true;
    this.connectedAt = Date.now();
    this.heartbeat = Number(heartbeatMs);
    if (this.paused) this.sendState();
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => this.beat(), this.heartbeat);
    this.state("connected", `chain ${this.hello.chain_id}, gateway ${this.hello.gateway_key.slice(0, 12)}…`);
  }

  // beat pings a quiet gateway and drops a silent one. Hidden tabs run
  // timers late; the gateway's own pings keep the connection alive then.
  beat() {
    const now = Date.now();
    if (now - this.lastRecv > 3 * this.heartbeat) {
      if (this.ws) this.ws.close(4000, closeReason("gateway silent for three heartbeats"));
      return;
    }
    if (now - (this.lastSent || 0) >= this.heartbeat) {
      this.pingSeq = (this.pingSeq || 0n) + 1n;
      try {
        this.send({ type: "ping", ping: { seq: this.pingSeq } });
      } catch {
        // The close handler reconnects.
      }
    }
  }

  closed(ws, ev) {
    if (ws !== this.ws) return;
    clearInterval(this.heartbeatTimer);
    this.ws = null;
    for (const j of this.jobs.values()) j.controller.abort("connection lost");
    const lasted = this.connectedAt ? Date.now() - this.connectedAt : 0;
    this.connectedAt = 0;
    const why = ev.reason ? `${ev.reason} (${ev.code})` : `connection closed (${ev.code})`;
    if (this.stopped) {
      if (this.currentState !== "stopped") this.state("stopped", why);
      return;
    }
    if (ev.code === NOT_ADMITTED) {
      this.state("refused", `the gateway refuses this provider: ${ev.reason}; retrying in ${REFUSED_RETRY / 1000} s`);
      this.retryTimer = setTimeout(() => {
        if (!this.stopped) this.connect();
      }, REFUSED_RETRY);
      return;
    }
    if (lasted > 60000) this.backoff = MIN_BACKOFF; // it was a healthy connection
    const delay = Math.floor(Math.random() * this.backoff) + 1;
    this.backoff = Math.min(2 * this.backoff, MAX_BACKOFF);
    this.state("reconnecting", `${why}; retrying in ${(delay / 1000).toFixed(1)} s`);
    this.retryTimer = setTimeout(() => {
      if (!this.stopped) this.connect();
    }, delay);
  }

  fail(id, code, message) {
    try {
      this.send({ type: "error", error: { id, code, message: clip(message) } });
    } catch {
      // The connection is gone; the gateway fails the job itself.
    }
  }

  startJob(job) {
    if (this.jobs.has(job.id)) return; // the gateway reused a running id: refuse the second
    if (this.jobs.size >= this.slots) return this.fail(job.id, "busy", "all slots are busy");
    const controller = new AbortController();
    const record = { id: job.id, model: job.request.model, state: "running", prompt: 0n, completion: 0n, amount: 0n };
    this.jobs.set(job.id, { controller, record });
    const deadline = job.deadline_unix_ms > 0n ? Number(job.deadline_unix_ms) - Date.now() : 3600e3;
    const timer = setTimeout(() => controller.abort("deadline"), Math.max(deadline, 0));
    this.emit("job", record);
    this.emit("stats", this.snapshot());
    this.run(job, controller, record).finally(() => clearTimeout(timer));
  }

  // checkpoint signs the partial receipt of everything sent so far
  // (protocol version 2): if this tab closes or loses the connection
  // mid-answer, or the consumer hangs up, the gateway bills the delivered
  // tokens with it. From version 3 it bills the prompt too, by
  // codec.promptEstimate (Ollama reports the prompt's count only at the
  // end); the text hash covers every delta sent, as the native agent's
  // (internal/provider/checkpoint.go); a price that overflows gets no
  // checkpoint, as it gets no receipt.
  async checkpoint(job, sent, completion) {
    const end = BigInt(Math.max(Date.now(), Number(job.terms.start_unix_ms), 1));
    const hash = await codec.sha256(codec.concat(sent));
    const prompt = this.version >= 3 ? codec.promptEstimate(job.request) : 0n;
    let bytes;
    try {
      bytes = codec.providerSignedBytes(codec.receiptFromTerms(job.terms, this.id.publicKey, { prompt_tokens: prompt, completion_tokens: completion }, hash, end));
    } catch {
      return undefined;
    }
    const signature = await keystore.sign(this.id, bytes);
    const cp = { completion_tokens: completion, end_unix_ms: end, signature: codec.toHex(signature) };
    if (prompt > 0n) cp.prompt_tokens = prompt;
    return cp;
  }

  finishJob(job, record, state) {
    this.jobs.delete(job.id); // before the last message: the gateway frees the slot when it arrives
    record.state = state;
    this.emit("job", record);
  }

  async run(job, controller, record) {
    const refused = checkTerms(this.hello, this.models, job);
    if (refused) {
      this.stats.failed++;
      this.finishJob(job, record, `refused: ${refused[0]}`);
      this.fail(job.id, refused[0], refused[1]);
      this.emit("stats", this.snapshot());
      return;
    }
    const signal = controller.signal;
    const started = performance.now();
    const holder = new codec.Utf8Holder();
    const sent = [];
    let seq = 0n;
    let held = 0;
    let firstToken = 0;
    let completion = 0n; // tokens sent, as the gateway counts them
    const checkpoints = this.version >= 2;
    const chunk = async (text, tokens, logprobs) => {
      if (seq === 0n) firstToken = performance.now() - started;
      const c = { id: job.id, seq, delta: text };
      if (tokens > 0) c.tokens = tokens;
      if (logprobs && logprobs.length) c.logprobs = logprobs;
      sent.push(enc.encode(text));
      completion += BigInt(tokens > 0 ? tokens : text !== "" ? 1 : 0);
      if (checkpoints && completion > 0n) c.checkpoint = await this.checkpoint(job, sent, completion);
      this.send({ type: "chunk", chunk: c });
      seq++;
    };
    try {
      const res = await generate(this.ollama, job.request, signal, (d) => {
        if (signal.aborted) throw new Error(String(signal.reason));
        const text = holder.push(d.text);
        if (text === "" && d.logprobs.length === 0) {
          held += d.tokens;
          return;
        }
        const tokens = held + d.tokens;
        held = 0;
        return chunk(text, tokens, d.logprobs);
      });
      if (signal.aborted) throw new Error(String(signal.reason));
      const rest = holder.flush();
      if (rest) await chunk(rest, held, null);
      // A browser clock behind the gateway's must not make an invalid receipt.
      const end = BigInt(Math.max(Date.now(), Number(job.terms.start_unix_ms)));
      const responseHash = await codec.sha256(codec.concat(sent));
      const r = codec.receiptFromTerms(job.terms, this.id.publicKey, res.usage, responseHash, end);
      const signature = await keystore.sign(this.id, codec.providerSignedBytes(r));
      record.prompt = r.prompt_tokens;
      record.completion = r.completion_tokens;
      record.amount = r.amount;
      this.finishJob(job, record, "signed");
      const total = performance.now() - started;
      this.send({
        type: "done",
        done: {
          id: job.id, chunks: seq, usage: res.usage, finish_reason: res.finish_reason,
          timings: { first_token_us: Math.round(firstToken * 1000), total_us: Math.round(total * 1000) },
          end_unix_ms: end, receipt_signature: codec.toHex(signature),
        },
      });
      this.stats.served++;
      this.stats.tokens += r.completion_tokens;
      this.stats.earned += r.amount;
    } catch (err) {
      let code = err instanceof OllamaError ? err.code : "backend_error";
      if (signal.reason === "deadline") code = "deadline";
      else if (signal.aborted) code = "cancelled";
      this.stats.failed++;
      this.finishJob(job, record, code);
      this.fail(job.id, code, err.message || String(err));
      if (err instanceof OllamaError && err.unreachable) this.emit("unreachable", { message: err.message });
    }
    this.emit("stats", this.snapshot());
  }
}
