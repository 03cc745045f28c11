// Shared plumbing of the client scripts: the environment they read and the
// one JSON line each check prints. The scripts only report what the client
// returned; clients_test.go decides whether that is right (it knows the
// simulator's exact answers).
//
// Environment:
//   IDLEGRID_URL          the gateway's base URL, e.g. http://127.0.0.1:8420
//   IDLEGRID_API_KEY      an API key of the gateway
//   IDLEGRID_MODEL        the chat model (sim, or an Ollama model)
//   IDLEGRID_TOOLS_MODEL  a model that accepts tools (default IDLEGRID_MODEL)
//   IDLEGRID_EMBED_MODEL  a model that embeds (default IDLEGRID_MODEL)
//   IDLEGRID_MAX_TOKENS   completion tokens per answer (default 24)
//   IDLEGRID_LONG_TOKENS  completion tokens of tool turns and JSON answers
//                         (default 200)
//   IDLEGRID_RETRIES      the clients' own retries of failed requests
//                         (default 0: every failure shows)
//   IDLEGRID_CHECKS       comma-separated features to run (default: all)
//   IDLEGRID_TIMEOUT_MS   time one check may take (default 30000)

import { z } from "zod";

function required(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return v;
}

export const env = {
  url: required("IDLEGRID_URL").replace(/\/+$/, ""),
  key: required("IDLEGRID_API_KEY"),
  model: required("IDLEGRID_MODEL"),
  toolsModel: process.env.IDLEGRID_TOOLS_MODEL || process.env.IDLEGRID_MODEL,
  embedModel: process.env.IDLEGRID_EMBED_MODEL || process.env.IDLEGRID_MODEL,
  maxTokens: Number(process.env.IDLEGRID_MAX_TOKENS || 24),
  retries: Number(process.env.IDLEGRID_RETRIES || 0),
  timeoutMs: Number(process.env.IDLEGRID_TIMEOUT_MS || 30000),
  only: (process.env.IDLEGRID_CHECKS || "").split(",").filter(Boolean),
};

// A prompt per script, so the answers differ between clients.
export const prompt = (client) => `Say something about idle GPUs, ${client}.`;

// longTokens bounds the answers of tool turns and structured output: a
// call's or an object's JSON takes more tokens than a sentence, and a call
// cut by the limit is only text.
export const longTokens = Number(process.env.IDLEGRID_LONG_TOKENS || 200);

// The weather tool every script declares, as JSON Schema and as zod.
export const weatherTool = {
  name: "get_weather",
  description: "The current weather in a city",
  parameters: {
    type: "object",
    properties: { city: { type: "string", description: "the city" } },
    required: ["city"],
    additionalProperties: false,
  },
};
export const weatherArgs = z.object({ city: z.string().describe("the city") });
export const weatherResult = (city) => JSON.stringify({ city, celsius: 21, sky: "clear" });

// The structured-output schema every script asks for.
export const person = z.object({
  name: z.string(),
  age: z.number().int(),
  languages: z.array(z.string()),
});
export const personSchema = {
  type: "object",
  properties: {
    name: { type: "string" },
    age: { type: "integer" },
    languages: { type: "array", items: { type: "string" } },
  },
  required: ["name", "age", "languages"],
  additionalProperties: false,
};
export const personPrompt = "Invent a person who writes software: name, age, languages.";

// parsePerson reports whether text is JSON that fits the person schema.
export function parsePerson(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { json: false, valid: false, problem: String(e.message) };
  }
  const r = person.safeParse(value);
  return { json: true, valid: r.success, value, problem: r.success ? undefined : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ") };
}

// describeVectors summarizes embeddings without printing them whole.
export function describeVectors(vectors) {
  return {
    count: vectors.length,
    dims: vectors.map((v) => v.length),
    finite: vectors.every((v) => Array.from(v).every(Number.isFinite)),
    head: vectors.map((v) => Array.from(v.slice(0, 4))),
  };
}

// cosine is the cosine similarity of two vectors: 1 for the same
// direction. Embeddings of one input are compared by it, not byte for byte:
// base64 carries float32, JSON numbers float64, and a real model's batch
// may round differently from a single input.
export function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return a.length === b.length && na > 0 && nb > 0 ? dot / Math.sqrt(na * nb) : 0;
}

// errorInfo is what a script reports about a thrown error: the client's
// own class name, HTTP status and message, so the test can check that each
// client surfaces the gateway's error as its own error type.
export function errorInfo(e) {
  const info = { name: e?.constructor?.name || typeof e, message: String(e?.message ?? e) };
  for (const k of ["status", "status_code", "statusCode", "code", "type", "param"]) {
    if (e?.[k] !== undefined && e?.[k] !== null) info[k] = e[k];
  }
  if (e?.lc_error_code) info.lc_error_code = e.lc_error_code;
  if (e?.cause && e.cause !== e) info.cause = { name: e.cause?.constructor?.name, message: String(e.cause?.message ?? e.cause), status: e.cause?.status };
  return info;
}

// recordingFetch records the X-Request-Id of every response a client's
// fetch receives, for clients that do not expose it (the Ollama API has no
// id field): the request id is the receipt's id. mark() returns a function
// that gives the id of the first successful response after the mark
// (undefined when it carried none), so a check never reports an earlier
// check's id, nor that of a failed try the client retried.
export function recordingFetch() {
  const ids = [];
  const f = async (input, init) => {
    const resp = await fetch(input, init);
    if (resp.ok) ids.push(resp.headers.get("x-request-id") ?? undefined);
    return resp;
  };
  return {
    fetch: f,
    mark: () => {
      const n = ids.length;
      return () => ids[n];
    },
  };
}

// run runs the checks one after another and prints one JSON line each:
// {"client","feature","check","result"} or {...,"error"}. A check that
// expects an error returns it as part of its result.
export async function run(client, checks) {
  for (const c of checks) {
    if (env.only.length && !env.only.includes(c.feature)) continue;
    const line = { client, feature: c.feature, check: c.check };
    let timer;
    try {
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${env.timeoutMs} ms`)), env.timeoutMs);
      });
      line.result = await Promise.race([c.run(), timeout]);
    } catch (e) {
      line.error = errorInfo(e);
    } finally {
      clearTimeout(timer);
    }
    process.stdout.write(JSON.stringify(line) + "\n");
  }
  // A client may keep retrying a check that timed out (LangChain's
  // OllamaEmbeddings retries 404s with back-off): exit once the lines are
  // written instead of waiting for it.
  await new Promise((resolve) => process.stdout.write("", resolve));
  process.exit(0);
}

// expectError runs fn, which must throw, and returns what was thrown.
export async function expectError(fn) {
  try {
    const got = await fn();
    return { thrown: false, got: summarize(got) };
  } catch (e) {
    return { thrown: true, error: errorInfo(e) };
  }
}

function summarize(v) {
  try {
    return JSON.parse(JSON.stringify(v ?? null));
  } catch {
    return String(v);
  }
}
