// idlegrid browser provider: the bytes every party must agree on. This file
// mirrors internal/keys (addresses, key files), internal/protocol
// (AuthBytes, the terms a provider signs) and internal/receipt (canonical
// receipt bytes, the provider's domain tag, amounts); the Go tests run these
// functions in Chromium and compare their bytes with the Go code's.

const enc = new TextEncoder();

// PROTOCOL_VERSION is the newest protocol version this page speaks (2:
// chunks carry checkpoints; 3: checkpoints bill the prompt);
// MIN_PROTOCOL_VERSION the oldest (as internal/protocol).
export const PROTOCOL_VERSION = 3;
export const MIN_PROTOCOL_VERSION = 1;
export const RECEIPT_VERSION = 1;
const AUTH_TAG = "idlegrid/provider-auth/v1\n";
const PROVIDER_RECEIPT_TAG = "idlegrid/receipt/provider/v1\n";
const ADDRESS_PREFIX = "idg";
const MAX_U64 = (1n << 64n) - 1n;
const MAX_I64 = (1n << 63n) - 1n;

// Limits of internal/receipt (bytes of UTF-8).
const LIMITS = { chain_id: 64, request_id: 128, consumer: 128, model: 256, model_digest: 128 };

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function fromHex(s, size) {
  if (typeof s !== "string" || !/^([0-9a-f]{2})*$/i.test(s) || (size !== undefined && s.length !== 2 * size)) {
    throw new Error(`want ${size === undefined ? "" : 2 * size + " "}hex digits`);
  }
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function fromBase64(s) {
  const bin = atob(s);
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

export function concat(parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

function u32(n) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, false);
  return b;
}

// u64 encodes a BigInt (or a safe integer) as 8 big-endian bytes.
function u64(v, what) {
  const n = BigInt(v);
  if (n < 0n || n > MAX_U64) throw new Error(`${what} ${n} does not fit in 64 bits`);
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n, false);
  return b;
}

function str(s) {
  const b = enc.encode(s);
  return concat([u32(b.length), b]);
}

// authBytes is what a provider signs to answer hello (protocol.AuthBytes).
export function authBytes(nonce, gatewayKey, chainID) {
  const parts = [enc.encode(AUTH_TAG)];
  for (const p of [nonce, gatewayKey, enc.encode(chainID)]) parts.push(u32(p.length), p);
  return concat(parts);
}

// cost is money.Cost: tokens × price per million tokens, rounded down.
export function cost(tokens, pricePerMTok) {
  const c = (BigInt(tokens) * BigInt(pricePerMTok)) / 1000000n;
  if (c > MAX_U64) throw new Error("amount overflow");
  return c;
}

// amount is receipt.ComputeAmount.
export function amount(promptTokens, completionTokens, pricePrompt, priceCompletion) {
  const a = cost(promptTokens, pricePrompt) + cost(completionTokens, priceCompletion);
  if (a > MAX_U64) throw new Error("amount overflow");
  return a;
}

// receiptFromTerms is protocol.Terms.Receipt: the receipt the provider
// signs at the end of a job. terms is a job's terms as parseMessage returns
// them (prices and times as BigInt), provider the 32-byte public key,
// responseHash the sha256 of every delta sent.
export function receiptFromTerms(terms, provider, usage, responseHash, endUnixMs) {
  return {
    version: RECEIPT_VERSION,
    chain_id: terms.chain_id,
    request_id: terms.request_id,
    gateway: fromHex(terms.gateway, 32),
    provider,
    consumer: terms.consumer,
    model: terms.model,
    model_digest: terms.model_digest,
    prompt_tokens: BigInt(usage.prompt_tokens),
    completion_tokens: BigInt(usage.completion_tokens),
    price_prompt: BigInt(terms.price_per_mtok_in),
    price_completion: BigInt(terms.price_per_mtok_out),
    amount: amount(usage.prompt_tokens, usage.completion_tokens, terms.price_per_mtok_in, terms.price_per_mtok_out),
    request_hash: fromHex(terms.request_hash, 32),
    response_hash: responseHash,
    start_unix_ms: BigInt(terms.start_unix_ms),
    end_unix_ms: BigInt(endUnixMs),
  };
}

// promptEstimate is protocol.PromptEstimate: the prompt tokens a
// checkpoint claims before the backend reports the real count, one per 4
// bytes of UTF-8 of the system text, the prompt and the messages'
// contents, rounded up.
export function promptEstimate(req) {
  let n = 0n;
  for (const s of [req.prompt, req.system, ...(req.messages || []).map((m) => m.content)]) {
    if (typeof s === "string") n += BigInt(enc.encode(s).length);
  }
  return (n + 3n) / 4n;
}

// receiptBytes is receipt.Receipt.Bytes: fixed field order, strings
// length-prefixed, integers 8 bytes big-endian.
export function receiptBytes(r) {
  for (const [field, max] of Object.entries(LIMITS)) {
    const n = enc.encode(r[field]).length;
    if (n === 0 || n > max) throw new Error(`receipt ${field}: want 1 to ${max} bytes`);
  }
  for (const t of [r.start_unix_ms, r.end_unix_ms]) {
    if (t < 0n || t > MAX_I64) throw new Error("receipt time out of range");
  }
  return concat([
    Uint8Array.of(r.version),
    str(r.chain_id),
    str(r.request_id),
    r.gateway,
    r.provider,
    str(r.consumer),
    str(r.model),
    str(r.model_digest),
    u64(r.prompt_tokens, "prompt tokens"),
    u64(r.completion_tokens, "completion tokens"),
    u64(r.price_prompt, "prompt price"),
    u64(r.price_completion, "completion price"),
    u64(r.amount, "amount"),
    r.request_hash,
    r.response_hash,
    u64(r.start_unix_ms, "start time"),
    u64(r.end_unix_ms, "end time"),
  ]);
}

// providerSignedBytes is what the provider's receipt signature covers.
export function providerSignedBytes(r) {
  return concat([enc.encode(PROVIDER_RECEIPT_TAG), receiptBytes(r)]);
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

// address is keys.PublicKey.Address: "idg" and the hex of the first 20
// bytes of sha256(public key).
export async function address(publicKey) {
  return ADDRESS_PREFIX + toHex((await sha256(publicKey)).slice(0, 20));
}

export function validAddress(a) {
  return typeof a === "string" && /^idg[0-9a-f]{40}$/.test(a);
}

// Integer fields of gateway messages that may exceed 2^53: JSON numbers the
// page must read exactly. They become BigInt.
const BIG_FIELDS = new Set(["price_per_mtok_in", "price_per_mtok_out", "start_unix_ms", "deadline_unix_ms", "seq", "seed"]);

// parseLine decodes one JSON message, reading the money and time fields as
// BigInt from their source text, so a price never passes through a float.
export function parseLine(line) {
  return JSON.parse(line, function (key, value, context) {
    if (!BIG_FIELDS.has(key) || typeof value !== "number") return value;
    if (context && typeof context.source === "string") {
      if (!/^-?\d+$/.test(context.source)) throw new Error(`${key} must be an integer`);
      return BigInt(context.source);
    }
    // Browsers without JSON source access: only exact values pass.
    if (!Number.isSafeInteger(value)) throw new Error(`${key} ${value} cannot be read exactly by this browser`);
    return BigInt(value);
  });
}

// stringify encodes a message; BigInt fields become exact JSON numbers.
export function stringify(msg) {
  return JSON.stringify(msg, (_key, value) => {
    if (typeof value !== "bigint") return value;
    if (typeof JSON.rawJSON === "function") return JSON.rawJSON(value.toString());
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error("integer too large for this browser");
    return Number(value);
  });
}

// Utf8Holder makes generated text safe to send as chunk deltas: a delta
// must be well-formed text (the gateway hashes its UTF-8 bytes), so a
// surrogate pair split across two backend tokens waits for its second half,
// and a lone surrogate becomes U+FFFD — as the native agent holds back and
// replaces split UTF-8.
export class Utf8Holder {
  constructor() {
    this.pending = "";
  }
  // push returns the text that can be sent now.
  push(text) {
    let s = this.pending + text;
    this.pending = "";
    const last = s.charCodeAt(s.length - 1);
    if (last >= 0xd800 && last <= 0xdbff) {
      this.pending = s.slice(-1);
      s = s.slice(0, -1);
    }
    return s.toWellFormed();
  }
  // flush returns what is still held, at the end of the answer.
  flush() {
    const s = this.pending.toWellFormed();
    this.pending = "";
    return s;
  }
}

// formatAmount is money.Amount.String: tokens with six decimals.
export function formatAmount(a) {
  const n = BigInt(a);
  return `${n / 1000000n}.${(n % 1000000n).toString().padStart(6, "0")}`;
}
