// idlegrid browser provider: the visitor's Ollama, over its HTTP API with
// fetch — /api/tags for the models and their digests, streaming /api/chat
// and /api/generate for jobs. It translates a protocol request exactly as
// the native agent's Ollama client does (internal/backend/ollama).

import { parseLine, stringify } from "./codec.js";

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

// listModels returns the server's models with their digests.
export async function listModels(base, signal) {
  const res = await call(base, "/api/tags", { signal });
  const tags = await res.json();
  if (!tags || !Array.isArray(tags.models)) throw new OllamaError("backend_error", "ollama /api/tags: not a model list");
  return tags.models
    .filter((m) => m && typeof m.name === "string" && typeof m.digest === "string" && m.name && m.digest)
    .map((m) => ({
      name: m.name,
      digest: m.digest,
      quantization: (m.details && m.details.quantization_level) || "",
      family: (m.details && m.details.family) || "",
      parameter_size: (m.details && m.details.parameter_size) || "",
    }));
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
