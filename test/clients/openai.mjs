// The official OpenAI Node SDK against the gateway's OpenAI API.
import OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";

import { env, longTokens, prompt, weatherTool, weatherResult, person, personSchema, personPrompt, parsePerson, describeVectors, cosine, run, expectError } from "./lib.mjs";

const client = new OpenAI({ baseURL: `${env.url}/v1`, apiKey: env.key, maxRetries: env.retries });
const badKey = new OpenAI({ baseURL: `${env.url}/v1`, apiKey: "ig-not-a-key-0000000000", maxRetries: env.retries });

const messages = [{ role: "user", content: prompt("openai") }];
const greedy = { temperature: 0, seed: 7, max_tokens: env.maxTokens };
const tools = [{ type: "function", function: weatherTool }];
const toolMessages = [{ role: "user", content: "What is the weather in Paris?" }];
const toolGreedy = { ...greedy, max_tokens: longTokens };

function usage(u) {
  return u && { prompt: u.prompt_tokens, completion: u.completion_tokens, total: u.total_tokens };
}

function toolCalls(calls) {
  return (calls || []).map((c) => ({ id: c.id, type: c.type, name: c.function?.name, arguments: c.function?.arguments }));
}

await run("openai", [
  {
    feature: "chat",
    check: "create",
    run: async () => {
      const r = await client.chat.completions.create({ model: env.model, messages, ...greedy });
      return { id: r.id, messages, max_tokens: env.maxTokens, text: r.choices[0].message.content, finish_reason: r.choices[0].finish_reason, usage: usage(r.usage) };
    },
  },
  {
    feature: "stream",
    check: "include-usage",
    run: async () => {
      const stream = await client.chat.completions.create({ model: env.model, messages, ...greedy, stream: true, stream_options: { include_usage: true } });
      let text = "", id, finish, u, chunks = 0, usageChunkChoices;
      for await (const chunk of stream) {
        chunks++;
        id ??= chunk.id;
        if (chunk.usage) {
          u = chunk.usage;
          usageChunkChoices = chunk.choices.length;
        }
        for (const c of chunk.choices) {
          text += c.delta?.content ?? "";
          finish = c.finish_reason ?? finish;
        }
      }
      return { id, messages, max_tokens: env.maxTokens, text, finish_reason: finish, usage: usage(u), chunks, usage_chunk_choices: usageChunkChoices };
    },
  },
  {
    feature: "errors",
    check: "bad-model",
    run: () => expectError(() => client.chat.completions.create({ model: "no-such-model", messages, max_tokens: 4 })),
  },
  {
    feature: "errors",
    check: "bad-key",
    run: () => expectError(() => badKey.chat.completions.create({ model: env.model, messages, max_tokens: 4 })),
  },
  {
    feature: "tools",
    check: "call",
    run: async () => {
      const r = await client.chat.completions.create({ model: env.toolsModel, messages: toolMessages, tools, tool_choice: "required", ...toolGreedy });
      const m = r.choices[0].message;
      return { id: r.id, finish_reason: r.choices[0].finish_reason, text: m.content, tool_calls: toolCalls(m.tool_calls), usage: usage(r.usage) };
    },
  },
  {
    feature: "tools",
    check: "stream",
    run: async () => {
      const stream = await client.chat.completions.create({ model: env.toolsModel, messages: toolMessages, tools, tool_choice: "required", ...toolGreedy, stream: true, stream_options: { include_usage: true } });
      const calls = [];
      let id, finish, u, text = "";
      for await (const chunk of stream) {
        id ??= chunk.id;
        if (chunk.usage) u = chunk.usage;
        for (const c of chunk.choices) {
          text += c.delta?.content ?? "";
          finish = c.finish_reason ?? finish;
          for (const d of c.delta?.tool_calls ?? []) {
            // OpenAI streams a call's id, type and name once, in its first
            // fragment, and the arguments in pieces after it.
            const call = (calls[d.index] ??= { id: undefined, type: undefined, name: undefined, arguments: "", fragments: 0 });
            call.id ??= d.id;
            call.type ??= d.type;
            call.name ??= d.function?.name;
            call.arguments += d.function?.arguments ?? "";
            call.fragments++;
          }
        }
      }
      // The same request unstreamed, whose calls the streamed ones must equal
      // on a deterministic model.
      const whole = await client.chat.completions.create({ model: env.toolsModel, messages: toolMessages, tools, tool_choice: "required", ...toolGreedy });
      return { id, finish_reason: finish, text, tool_calls: calls, usage: usage(u), unstreamed: { tool_calls: toolCalls(whole.choices[0].message.tool_calls) } };
    },
  },
  {
    feature: "tools",
    check: "round-trip",
    run: async () => {
      const first = await client.chat.completions.create({ model: env.toolsModel, messages: toolMessages, tools, tool_choice: "required", ...toolGreedy });
      const m = first.choices[0].message;
      const history = [...toolMessages, m];
      for (const c of m.tool_calls ?? []) {
        const args = JSON.parse(c.function.arguments);
        history.push({ role: "tool", tool_call_id: c.id, content: weatherResult(args.city) });
      }
      const second = await client.chat.completions.create({ model: env.toolsModel, messages: history, tools, ...toolGreedy });
      return {
        first: { id: first.id, finish_reason: first.choices[0].finish_reason, tool_calls: toolCalls(m.tool_calls) },
        second: { id: second.id, finish_reason: second.choices[0].finish_reason, text: second.choices[0].message.content, tool_calls: toolCalls(second.choices[0].message.tool_calls), usage: usage(second.usage) },
      };
    },
  },
  {
    feature: "structured",
    check: "json-schema",
    run: async () => {
      const r = await client.chat.completions.create({
        model: env.model,
        messages: [{ role: "user", content: personPrompt }],
        response_format: { type: "json_schema", json_schema: { name: "person", strict: true, schema: personSchema } },
        temperature: 0,
        max_tokens: longTokens,
      });
      return { id: r.id, finish_reason: r.choices[0].finish_reason, text: r.choices[0].message.content, ...parsePerson(r.choices[0].message.content), usage: usage(r.usage) };
    },
  },
  {
    feature: "structured",
    check: "json-object",
    run: async () => {
      const r = await client.chat.completions.create({
        model: env.model,
        messages: [{ role: "user", content: personPrompt + " Answer in JSON." }],
        response_format: { type: "json_object" },
        temperature: 0,
        max_tokens: longTokens,
      });
      const text = r.choices[0].message.content;
      let json = true;
      try {
        JSON.parse(text);
      } catch {
        json = false;
      }
      return { id: r.id, finish_reason: r.choices[0].finish_reason, text, json, usage: usage(r.usage) };
    },
  },
  {
    feature: "structured",
    check: "zod-parse",
    run: async () => {
      const r = await client.chat.completions.parse({
        model: env.model,
        messages: [{ role: "user", content: personPrompt }],
        response_format: zodResponseFormat(person, "person"),
        temperature: 0,
        max_tokens: longTokens,
      });
      const m = r.choices[0].message;
      return { id: r.id, finish_reason: r.choices[0].finish_reason, text: m.content, parsed: m.parsed, valid: person.safeParse(m.parsed).success };
    },
  },
  {
    feature: "embeddings",
    check: "create",
    run: async () => {
      // Without encoding_format the SDK asks for base64 and decodes it.
      const { data: r, response } = await client.embeddings.create({ model: env.embedModel, input: ["idle GPUs", "busy GPUs"] }).withResponse();
      const again = await client.embeddings.create({ model: env.embedModel, input: "idle GPUs", encoding_format: "float" });
      return {
        id: response.headers.get("x-request-id"),
        model: r.model,
        indexes: r.data.map((d) => d.index),
        ...describeVectors(r.data.map((d) => d.embedding)),
        usage: r.usage && { prompt: r.usage.prompt_tokens, total: r.usage.total_tokens },
        // The float answer for the same input is the decoded base64 one.
        repeat_cosine: cosine(again.data[0].embedding, r.data[0].embedding),
      };
    },
  },
  {
    feature: "responses",
    check: "create",
    run: async () => {
      const { data: r, response } = await client.responses.create({ model: env.model, input: prompt("openai"), temperature: 0, max_output_tokens: env.maxTokens }).withResponse();
      return { id: response.headers.get("x-request-id") ?? r.id, response_id: r.id, status: r.status, messages, max_tokens: env.maxTokens, text: r.output_text, usage: r.usage && { prompt: r.usage.input_tokens, completion: r.usage.output_tokens, total: r.usage.total_tokens } };
    },
  },
  {
    feature: "responses",
    check: "stream",
    run: async () => {
      const { data: stream, response } = await client.responses.create({ model: env.model, input: prompt("openai"), temperature: 0, max_output_tokens: env.maxTokens, stream: true }).withResponse();
      const events = [];
      let text = "", final;
      for await (const ev of stream) {
        events.push(ev.type);
        if (ev.type === "response.output_text.delta") text += ev.delta;
        // The last event: completed, or incomplete at max_output_tokens.
        if (ev.type === "response.completed" || ev.type === "response.incomplete") final = ev.response;
      }
      return {
        id: response.headers.get("x-request-id") ?? final?.id,
        response_id: final?.id,
        status: final?.status,
        events: events.filter((t, i) => t !== events[i - 1]),
        messages,
        max_tokens: env.maxTokens,
        text,
        final_text: final?.output?.flatMap((o) => o.content ?? []).map((c) => c.text ?? "").join(""),
        usage: final?.usage && { prompt: final.usage.input_tokens, completion: final.usage.output_tokens, total: final.usage.total_tokens },
      };
    },
  },
  {
    feature: "responses",
    check: "function-call",
    run: async () => {
      const { data: r, response } = await client.responses.create({
        model: env.toolsModel,
        input: "What is the weather in Paris?",
        tools: [{ type: "function", ...weatherTool, strict: true }],
        tool_choice: "required",
        temperature: 0,
        max_output_tokens: longTokens,
      }).withResponse();
      return { id: response.headers.get("x-request-id") ?? r.id, response_id: r.id, status: r.status, tool_calls: r.output.filter((o) => o.type === "function_call").map((o) => ({ id: o.call_id, name: o.name, arguments: o.arguments })) };
    },
  },
]);
