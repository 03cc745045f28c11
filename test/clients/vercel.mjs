// The Vercel AI SDK (ai + @ai-sdk/openai-compatible) against the gateway's
// OpenAI API.
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, streamText, generateObject, embedMany, tool, stepCountIs, Output } from "ai";

import { env, longTokens, prompt, weatherArgs, weatherResult, person, personPrompt, describeVectors, run, expectError } from "./lib.mjs";

// Warnings (generateObject is deprecated in favour of generateText's output)
// go to stderr; the results are on stdout.
globalThis.AI_SDK_LOG_WARNINGS = false;

const settings = { name: "idlegrid", baseURL: `${env.url}/v1`, includeUsage: true, supportsStructuredOutputs: true };
const provider = createOpenAICompatible({ ...settings, apiKey: env.key });
const badKey = createOpenAICompatible({ ...settings, apiKey: "ig-not-a-key-0000000000" });

const messages = [{ role: "user", content: prompt("vercel") }];
const greedy = { temperature: 0, seed: 7, maxOutputTokens: env.maxTokens, maxRetries: env.retries };

const usage = (u) => u && { prompt: u.inputTokens, completion: u.outputTokens, total: u.totalTokens };

// The tool executes locally, as in an app: the model asks, the SDK runs it
// and sends the result back in the next step.
const weather = tool({
  description: "The current weather in a city",
  inputSchema: weatherArgs,
  execute: async ({ city }) => JSON.parse(weatherResult(city)),
});

await run("vercel", [
  {
    feature: "chat",
    check: "generateText",
    run: async () => {
      const r = await generateText({ model: provider.chatModel(env.model), messages, ...greedy });
      return { id: r.response.id, messages, max_tokens: env.maxTokens, text: r.text, finish_reason: r.finishReason, usage: usage(r.usage) };
    },
  },
  {
    feature: "stream",
    check: "streamText",
    run: async () => {
      const r = streamText({ model: provider.chatModel(env.model), messages, ...greedy, onError: () => {} });
      let text = "", chunks = 0;
      for await (const delta of r.textStream) {
        text += delta;
        chunks++;
      }
      const [u, finish, resp] = await Promise.all([r.usage, r.finishReason, r.response]);
      return { id: resp.id, messages, max_tokens: env.maxTokens, text, finish_reason: finish, usage: usage(u), chunks };
    },
  },
  {
    feature: "errors",
    check: "bad-model",
    run: () => expectError(() => generateText({ model: provider.chatModel("no-such-model"), messages, ...greedy })),
  },
  {
    feature: "errors",
    check: "bad-key",
    run: () => expectError(() => generateText({ model: badKey.chatModel(env.model), messages, ...greedy })),
  },
  {
    feature: "tools",
    check: "round-trip",
    run: async () => {
      const r = await generateText({
        model: provider.chatModel(env.toolsModel),
        prompt: "What is the weather in Paris?",
        tools: { get_weather: weather },
        // The first step must call the tool; the next answers with its result.
        prepareStep: ({ stepNumber }) => ({ toolChoice: stepNumber === 0 ? "required" : "auto" }),
        stopWhen: stepCountIs(3),
        ...greedy,
        maxOutputTokens: longTokens,
      });
      return {
        steps: r.steps.map((s) => ({
          id: s.response.id,
          finish_reason: s.finishReason,
          text: s.text,
          tool_calls: s.toolCalls.map((c) => ({ id: c.toolCallId, name: c.toolName, arguments: c.input })),
          tool_results: s.toolResults.map((t) => ({ id: t.toolCallId, output: t.output })),
          usage: usage(s.usage),
        })),
        text: r.text,
        finish_reason: r.finishReason,
      };
    },
  },
  {
    feature: "tools",
    check: "stream",
    run: async () => {
      const r = streamText({
        model: provider.chatModel(env.toolsModel),
        prompt: "What is the weather in Paris?",
        tools: { get_weather: weather },
        toolChoice: "required",
        stopWhen: stepCountIs(1),
        ...greedy,
        maxOutputTokens: longTokens,
        onError: () => {}, // thrown from fullStream below
      });
      const calls = [];
      for await (const part of r.fullStream) {
        if (part.type === "tool-call") calls.push({ id: part.toolCallId, name: part.toolName, arguments: part.input });
        if (part.type === "error") throw part.error;
      }
      const [finish, resp, u] = await Promise.all([r.finishReason, r.response, r.usage]);
      return { id: resp.id, finish_reason: finish, tool_calls: calls, usage: usage(u) };
    },
  },
  {
    feature: "structured",
    check: "generateObject",
    run: async () => {
      const r = await generateObject({ model: provider.chatModel(env.model), schema: person, schemaName: "person", prompt: personPrompt, temperature: 0, maxOutputTokens: longTokens, maxRetries: env.retries });
      return { id: r.response.id, finish_reason: r.finishReason, object: r.object, valid: person.safeParse(r.object).success, usage: usage(r.usage) };
    },
  },
  {
    feature: "structured",
    check: "output-object",
    run: async () => {
      const r = await generateText({ model: provider.chatModel(env.model), output: Output.object({ schema: person }), prompt: personPrompt, temperature: 0, maxOutputTokens: longTokens, maxRetries: env.retries });
      return { id: r.response.id, finish_reason: r.finishReason, object: r.output, valid: person.safeParse(r.output).success, usage: usage(r.usage) };
    },
  },
  {
    feature: "embeddings",
    check: "embedMany",
    run: async () => {
      const r = await embedMany({ model: provider.embeddingModel(env.embedModel), values: ["idle GPUs", "busy GPUs"], maxRetries: env.retries });
      return { id: r.responses?.[0]?.headers?.["x-request-id"], ...describeVectors(r.embeddings), usage: r.usage && { prompt: r.usage.tokens } };
    },
  },
]);
