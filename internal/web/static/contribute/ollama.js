// idlegrid browser provider: the visitor's Ollama, over its HTTP API with
// fetch — /api/tags and /api/show for the models and their identities
// (modelIdentity, as internal/backend/ollama identity.go), streaming /api/chat
// and /api/generate for jobs. It translates a protocol request exactly as
// the native agent's Ollama client does (internal/backend/ollama).

import { concat, parseLine, sha256, stringify, toHex } from "./codec.js";

// OllamaError carries the protocol error code a failed job reports.
// unreachable is set when the browser could not reach the server at all:
// no server there, or (the usual reason) Ollama refused this page's origin.
export class OllamaError extends Error {
  constructor(code, message, unreachable = false) {
    super(message);
    this.code = code;
    this.unreachable = unreachable;
  }
}

async function call(base, path, init) {
  let res;
  try {
    res = await fetch(base + path, init);
  } catch (err) {
    if (init && init.signal && init.signal.aborted) throw err;
    // fetch says only "Failed to fetch" for CORS refusals and for
    // servers that are not there: the page explains both.
    throw new OllamaError("backend_error", `cannot reach Ollama at ${base}: ${err.message}`, true);
  }
  if (res.ok) return res;
  let msg = `HTTP ${res.status}`;
  try {
    const body = await res.text();
    const e = JSON.parse(body);
    if (e && typeof e.error === "string" && e.error) msg += `: ${e.error}`;
  } catch {
    // Not Ollama's JSON error: the status says enough.
  }
  let code = "backend_error";
  if (res.status === 404 && path !== "/api/tags") code = "model_not_found";
  else if (res.status === 400) code = "bad_request";
  throw new OllamaError(code, `ollama ${path}: ${msg}`);
}

// listModels returns the server's models, each with its identity as
// digest and Ollama's own digest as backend_digest. A model /api/show
// cannot describe is left out, as the native agent does.
export async function listModels(base, signal) {
  const res = await call(base, "/api/tags", { signal });
  const tags = await res.json();
  if (!tags || !Array.isArray(tags.models)) throw new OllamaError("backend_error", "ollama /api/tags: not a model list");
  const out = [];
  let firstErr = null;
  for (const m of tags.models) {
    if (!m || typeof m.name !== "string" || typeof m.digest !== "string" || !m.name || !m.digest) continue;
    let id;
    try {
      const show = await call(base, "/api/show", {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ model: m.name }), signal,
      });
      id = await modelIdentity(await show.json());
    } catch (err) {
      if (signal && signal.aborted) throw err;
      firstErr = firstErr || err;
      continue;
    }
    out.push({
      name: m.name,
      digest: id || m.digest,
      backend_digest: m.digest,
      quantization: (m.details && m.details.quantization_level) || "",
      family: (m.details && m.details.family) || "",
      parameter_size: (m.details && m.details.parameter_size) || "",
    });
  }
  if (out.length === 0 && firstErr) throw firstErr;
  return out;
}

// The model identity of internal/backend/ollama identity.go: the sha256 of
// the content-addressed layers /api/show's modelfile names, the template,
// system prompt, sorted parameter lines, messages, renderer and parser,
// each length-prefixed. Only ASCII whitespace counts, as in Go.
const IDENTITY_VERSION = "idlegrid-model-identity/1";
const ASCII_SPACE = " \t\n\v\f\r";
const utf8 = new TextEncoder();

function trimASCII(s) {
  let i = 0;
  let j = s.length;
  while (i < j && ASCII_SPACE.includes(s[i])) i++;
  while (j > i && ASCII_SPACE.includes(s[j - 1])) j--;
  return s.slice(i, j);
}

// linesOf splits as Go's strings.Lines: after each "\n", none when empty.
function linesOf(s) {
  if (!s) return [];
  const parts = s.split("\n");
  if (parts[parts.length - 1] === "") parts.pop();
  return parts;
}

function blobDigest(p) {
  let base = p.replaceAll("\\", "/").replace(/\/+$/, "");
  base = base.slice(base.lastIndexOf("/") + 1);
  let h;
  if (base.startsWith("sha256-") || base.startsWith("sha256:")) h = base.slice(7).toLowerCase();
  else return null;
  return /^[0-9a-f]{64}$/.test(h) ? h : null;
}

function compareBytes(a, b) {
  const x = utf8.encode(a);
  const y = utf8.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

// modelIdentity returns the identity of the model an /api/show answer
// describes, or "" when it names no content-addressed weights.
export async function modelIdentity(show) {
  const str = (v) => (typeof v === "string" ? v : "");
  const layers = [];
  let weights = false;
  for (const line of linesOf(str(show && show.modelfile))) {
    const t = trimASCII(line);
    const sp = t.indexOf(" ");
    if (sp < 0) continue;
    const cmd = t.slice(0, sp).toUpperCase();
    if (cmd !== "FROM" && cmd !== "ADAPTER") continue;
    const h = blobDigest(trimASCII(t.slice(sp + 1)));
    if (!h) continue;
    weights = weights || cmd === "FROM";
    layers.push(`${cmd} sha256:${h}`);
  }
  if (!weights) return "";
  const params = [];
  for (const line of linesOf(str(show.parameters))) {
    const f = line.split(/[ \t\n\v\f\r]+/).filter((x) => x !== "");
    if (f.length) params.push(f.join(" "));
  }
  params.sort(compareBytes);
  const parts = [];
  const field = (name, value) => {
    const v = utf8.encode(value);
    const n = new Uint8Array(8);
    new DataView(n.buffer).setBigUint64(0, BigInt(v.length));
    parts.push(utf8.encode(name), n, v);
  };
  field("version", IDENTITY_VERSION);
  for (const l of layers) field("layer", l);
  field("template", str(show.template));
  field("system", str(show.system));
  for (const p of params) field("parameter", p);
  for (const m of Array.isArray(show.messages) ? show.messages : []) {
    field("message.role", str(m && m.role));
    field("message.content", str(m && m.content));
  }
  field("renderer", str(show.renderer));
  field("parser", str(show.parser));
  return toHex(await sha256(concat(parts)));
}

// body is toGenRequest of internal/backend/ollama.
function body(req) {
  const o = req.options || {};
  const common = { model: req.model, stream: !req.buffered };
  const options = {};
  if (o.max_tokens > 0) options.num_predict = o.max_tokens;
  for (const [from, to] of [["temperature", "temperature"], ["top_p", "top_p"], ["seed", "seed"], ["stop", "stop"]]) {
    if (o[from] !== undefined && o[from] !== null) options[to] = o[from];
  }
  if (Object.keys(options).length > 0) common.options = options;
  if (o.logprobs) {
    common.logprobs = true;
    if (o.top_logprobs) common.top_logprobs = o.top_logprobs;
  }
  if (req.kind === "chat") {
    const messages = (req.messages || []).map((m) => ({ role: m.role, content: m.content }));
    return ["/api/chat", { ...common, messages }];
  }
  if (req.kind === "generate") {
    const b = { ...common, prompt: req.prompt || "" };
    if (req.system) b.system = req.system;
    if (req.raw) b.raw = true;
    return ["/api/generate", b];
  }
  throw new OllamaError("bad_request", `unknown request kind ${JSON.stringify(req.kind)}`);
}

function logprobs(line) {
  if (!Array.isArray(line.logprobs)) return [];
  return line.logprobs.map((lp) => {
    const t = { token: String(lp.token), logprob: Number(lp.logprob) };
    if (Array.isArray(lp.top_logprobs) && lp.top_logprobs.length) {
      t.top_logprobs = lp.top_logprobs.map((a) => ({ token: String(a.token), logprob: Number(a.logprob) }));
    }
    return t;
  });
}

// generate runs one request, calling onDelta({text, tokens, logprobs}) for
// every piece of text in order, and returns {usage, finish_reason} from
// Ollama's final line. Aborting signal stops the request.
export async function generate(base, req, signal, onDelta) {
  const [path, b] = body(req);
  const res = await call(base, path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: stringify(b),
    signal,
  });
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let buf = new Uint8Array(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (value) {
      const joined = new Uint8Array(buf.length + value.length);
      joined.set(buf);
      joined.set(value, buf.length);
      buf = joined;
    }
    let nl;
    while ((nl = buf.indexOf(10)) >= 0) {
      const text = dec.decode(buf.subarray(0, nl)).trim();
      buf = buf.slice(nl + 1);
      if (!text) continue;
      const result = await handleLine(text, onDelta);
      if (result) {
        reader.cancel().catch(() => {});
        return result;
      }
    }
    if (buf.length > 16 << 20) throw new OllamaError("backend_error", "ollama: stream line longer than 16 MiB");
    if (done) {
      const text = dec.decode(buf).trim();
      if (text) {
        const result = await handleLine(text, onDelta);
        if (result) return result;
      }
      throw new OllamaError("backend_error", "ollama: the stream ended without its final line");
    }
  }
}

async function handleLine(text, onDelta) {
  let line;
  try {
    line = parseLine(text);
  } catch (err) {
    throw new OllamaError("backend_error", `ollama: bad stream line: ${err.message}`);
  }
  if (line === null || typeof line !== "object") throw new OllamaError("backend_error", "ollama: bad stream line");
  if (line.error !== undefined && line.error !== null) throw new OllamaError("backend_error", `ollama: ${line.error || "unknown error"}`);
  const piece = line.message && typeof line.message.content === "string" ? line.message.content : typeof line.response === "string" ? line.response : "";
  const lps = logprobs(line);
  if (piece || lps.length) await onDelta({ text: piece, tokens: Math.max(lps.length, piece ? 1 : 0), logprobs: lps });
  if (!line.done) return null;
  const count = (n) => (typeof n === "number" && n > 0 ? BigInt(Math.floor(n)) : 0n);
  return {
    usage: { prompt_tokens: count(line.prompt_eval_count), completion_tokens: count(line.eval_count) },
    finish_reason: line.done_reason === "length" ? "length" : "stop",
  };
}
