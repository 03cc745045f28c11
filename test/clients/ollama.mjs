// ollama-js against the gateway's Ollama API: with the API key as a header,
// and without any header (keyless loopback).
import { Ollama } from "ollama";
import { z } from "zod";

import { env, longTokens, prompt, weatherTool, weatherResult, personPrompt, person, parsePerson, describeVectors, cosine, recordingFetch, run, expectError } from "./lib.mjs";

// The Ollama API has no response id: the recording fetch keeps each
// response's X-Request-Id, the receipt's id.
const rec = recordingFetch();
const client = new Ollama({ host: env.url, headers: { Authorization: `Bearer ${env.key}` }, fetch: rec.fetch });
const badKey = new Ollama({ host: env.url, headers: { Authorization: "Bearer ig-not-a-key-0000000000" } });
const keyless = new Ollama({ host: env.url, fetch: rec.fetch });

const messages = [{ role: "user", content: prompt("ollama") }];
const options = { temperature: 0, seed: 7, num_predict: env.maxTokens };
const tools = [{ type: "function", function: weatherTool }];
const toolMessages = [{ role: "user", content: "What is the weather in Paris?" }];
const toolOptions = { ...options, num_predict: longTokens };

const usage = (r) => ({ prompt: r.prompt_eval_count, completion: r.eval_count });
const toolCalls = (calls) => (calls || []).map((c) => ({ name: c.function?.name, arguments: c.function?.arguments }));

async function chat(c) {
  const id = rec.mark();
  const r = await c.chat({ model: env.model, messages, options, stream: false });
  return { id: id(), messages, max_tokens: env.maxTokens, text: r.message.content, finish_reason: r.done_reason, usage: usage(r) };
}

await run("ollama", [
  { feature: "chat", check: "chat", run: () => chat(client) },
  {
    feature: "chat",
    check: "generate",
    run: async () => {
      const p = prompt("ollama generate");
      const id = rec.mark();
      const r = await client.generate({ model: env.model, prompt: p, options, stream: false });
      return { id: id(), prompt: p, max_tokens: env.maxTokens, text: r.response, finish_reason: r.done_reason, usage: usage(r) };
    },
  },
  {
    feature: "stream",
    check: "chat",
    run: async () => {
      const id = rec.mark();
      const stream = await client.chat({ model: env.model, messages, options, stream: true });
      let text = "", last, chunks = 0;
      for await (const part of stream) {
        chunks++;
        text += part.message?.content ?? "";
        last = part;
      }
      return { id: id(), messages, max_tokens: env.maxTokens, text, finish_reason: last?.done_reason, done: last?.done, usage: usage(last ?? {}), chunks };
    },
  },
  {
    feature: "errors",
    check: "bad-model",
    run: () => expectError(() => client.chat({ model: "no-such-model", messages, options: { num_predict: 4 } })),
  },
  {
    feature: "errors",
    check: "bad-key",
    run: () => expectError(() => badKey.chat({ model: env.model, messages, options: { num_predict: 4 } })),
  },
  {
    feature: "tools",
    check: "call",
    run: async () => {
      const id = rec.mark();
      const r = await client.chat({ model: env.toolsModel, messages: toolMessages, tools, options: toolOptions, stream: false });
      return { id: id(), finish_reason: r.done_reason, text: r.message.content, tool_calls: toolCalls(r.message.tool_calls), usage: usage(r) };
    },
  },
  {
    feature: "tools",
    check: "stream",
    run: async () => {
      const id = rec.mark();
      const stream = await client.chat({ model: env.toolsModel, messages: toolMessages, tools, options: toolOptions, stream: true });
      const calls = [];
      let text = "", last;
      for await (const part of stream) {
        text += part.message?.content ?? "";
        calls.push(...toolCalls(part.message?.tool_calls));
        last = part;
      }
      return { id: id(), finish_reason: last?.done_reason, text, tool_calls: calls, usage: usage(last ?? {}) };
    },
  },
  {
    feature: "tools",
    check: "round-trip",
    run: async () => {
      const firstID = rec.mark();
      const first = await client.chat({ model: env.toolsModel, messages: toolMessages, tools, options: toolOptions, stream: false });
      const history = [...toolMessages, first.message];
      for (const c of first.message.tool_calls ?? []) {
        history.push({ role: "tool", tool_name: c.function.name, content: weatherResult(c.function.arguments?.city) });
      }
      const secondID = rec.mark();
      const second = await client.chat({ model: env.toolsModel, messages: history, tools, options: toolOptions, stream: false });
      return {
        first: { id: firstID(), finish_reason: first.done_reason, tool_calls: toolCalls(first.message.tool_calls) },
        second: { id: secondID(), finish_reason: second.done_reason, text: second.message.content, tool_calls: toolCalls(second.message.tool_calls), usage: usage(second) },
      };
    },
  },
  {
    feature: "structured",
    check: "format-schema",
    run: async () => {
      const id = rec.mark();
      const r = await client.chat({ model: env.model, messages: [{ role: "user", content: personPrompt }], format: z.toJSONSchema(person), options: { temperature: 0, num_predict: longTokens }, stream: false });
      return { id: id(), finish_reason: r.done_reason, text: r.message.content, ...parsePerson(r.message.content), usage: usage(r) };
    },
  },
  {
    feature: "structured",
    check: "format-json",
    run: async () => {
      const id = rec.mark();
      const r = await client.generate({ model: env.model, prompt: personPrompt + " Answer in JSON.", format: "json", options: { temperature: 0, num_predict: longTokens }, stream: false });
      let json = true;
      try {
        JSON.parse(r.response);
      } catch {
        json = false;
      }
      return { id: id(), finish_reason: r.done_reason, text: r.response, json, usage: usage(r) };
    },
  },
  {
    feature: "embeddings",
    check: "embed",
    run: async () => {
      const id = rec.mark();
      const r = await client.embed({ model: env.embedModel, input: ["idle GPUs", "busy GPUs"] });
      const again = await client.embed({ model: env.embedModel, input: "idle GPUs" });
      return { id: id(), model: r.model, ...describeVectors(r.embeddings), usage: { prompt: r.prompt_eval_count }, repeat_cosine: cosine(again.embeddings[0], r.embeddings[0]) };
    },
  },
  {
    feature: "embeddings",
    check: "embeddings-legacy",
    run: async () => {
      const id = rec.mark();
      const r = await client.embeddings({ model: env.embedModel, prompt: "idle GPUs" });
      return { id: id(), ...describeVectors([r.embedding]) };
    },
  },
  {
    feature: "keyless",
    check: "chat",
    run: () => chat(keyless),
  },
  {
    feature: "keyless",
    check: "list-show",
    run: async () => {
      const list = await keyless.list();
      const show = await keyless.show({ model: env.model });
      return { models: list.models.map((m) => m.name), capabilities: show.capabilities, model_info_keys: Object.keys(show.model_info ?? {}) };
    },
  },
]);
