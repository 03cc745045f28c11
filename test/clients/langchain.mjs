// LangChain (@langchain/openai and @langchain/ollama) against the gateway's
// OpenAI and Ollama APIs.
import { ChatOpenAI, OpenAIEmbeddings } from "@langchain/openai";
import { ChatOllama, OllamaEmbeddings } from "@langchain/ollama";
import { HumanMessage, ToolMessage } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";

import { env, longTokens, prompt, weatherTool, weatherArgs, weatherResult, person, personPrompt, describeVectors, cosine, recordingFetch, run, expectError } from "./lib.mjs";

const openAI = (fields = {}) =>
  new ChatOpenAI({
    model: env.model,
    apiKey: env.key,
    configuration: { baseURL: `${env.url}/v1` },
    temperature: 0,
    maxTokens: env.maxTokens,
    maxRetries: env.retries,
    useResponsesApi: false,
    ...fields,
  });

// The Ollama API has no response id: the recording fetch keeps each
// response's X-Request-Id, the receipt's id.
const rec = recordingFetch();
const ollama = (fields = {}) =>
  new ChatOllama({
    model: env.model,
    baseUrl: env.url,
    headers: { Authorization: `Bearer ${env.key}` },
    fetch: rec.fetch,
    temperature: 0,
    seed: 7,
    numPredict: env.maxTokens,
    maxRetries: env.retries,
    ...fields,
  });

const messages = [{ role: "user", content: prompt("langchain") }];
const ollamaMessages = [{ role: "user", content: prompt("langchain ollama") }];

const weather = tool(async ({ city }) => weatherResult(city), { name: weatherTool.name, description: weatherTool.description, schema: weatherArgs });

const usage = (m) => m.usage_metadata && { prompt: m.usage_metadata.input_tokens, completion: m.usage_metadata.output_tokens, total: m.usage_metadata.total_tokens };
const text = (m) => (typeof m.content === "string" ? m.content : m.content.map((c) => c.text ?? "").join(""));
const toolCalls = (m) => (m.tool_calls ?? []).map((c) => ({ id: c.id, name: c.name, arguments: c.args }));

// roundTrip asks for the weather, runs the tool the model called and sends
// its result back: the agent loop every LangChain tool app runs.
async function roundTrip(llm, id) {
  const model = llm.bindTools([weather], { tool_choice: "required" });
  const question = new HumanMessage("What is the weather in Paris?");
  let mark = rec.mark();
  const first = await model.invoke([question]);
  const firstID = id(first, mark);
  const history = [question, first];
  for (const c of first.tool_calls ?? []) {
    history.push(new ToolMessage({ tool_call_id: c.id, name: c.name, content: await weather.invoke(c.args) }));
  }
  mark = rec.mark();
  const second = await llm.bindTools([weather]).invoke(history);
  return {
    first: { id: firstID, tool_calls: toolCalls(first), finish_reason: first.response_metadata?.finish_reason ?? first.response_metadata?.done_reason },
    second: { id: id(second, mark), text: text(second), tool_calls: toolCalls(second), usage: usage(second) },
  };
}

const openAIID = (m) => m.response_metadata?.id ?? m.id;

await run("langchain", [
  {
    feature: "chat",
    check: "ChatOpenAI",
    run: async () => {
      const m = await openAI().invoke(messages);
      return { id: openAIID(m), messages, max_tokens: env.maxTokens, text: text(m), finish_reason: m.response_metadata?.finish_reason, usage: usage(m) };
    },
  },
  {
    feature: "chat",
    check: "ChatOllama",
    run: async () => {
      const id = rec.mark();
      const m = await ollama().invoke(ollamaMessages);
      return { id: id(), messages: ollamaMessages, max_tokens: env.maxTokens, text: text(m), finish_reason: m.response_metadata?.done_reason, usage: usage(m) };
    },
  },
  {
    feature: "stream",
    check: "ChatOpenAI",
    run: async () => {
      let acc, chunks = 0;
      for await (const chunk of await openAI({ streamUsage: true }).stream(messages)) {
        acc = acc ? acc.concat(chunk) : chunk;
        chunks++;
      }
      return { id: acc.id ?? openAIID(acc), messages, max_tokens: env.maxTokens, text: text(acc), finish_reason: acc.response_metadata?.finish_reason, usage: usage(acc), chunks };
    },
  },
  {
    feature: "stream",
    check: "ChatOllama",
    run: async () => {
      let acc, chunks = 0;
      const id = rec.mark();
      for await (const chunk of await ollama().stream(ollamaMessages)) {
        acc = acc ? acc.concat(chunk) : chunk;
        chunks++;
      }
      return { id: id(), messages: ollamaMessages, max_tokens: env.maxTokens, text: text(acc), finish_reason: acc.response_metadata?.done_reason, usage: usage(acc), chunks };
    },
  },
  {
    feature: "errors",
    check: "bad-model",
    run: () => expectError(() => openAI({ model: "no-such-model" }).invoke(messages)),
  },
  {
    feature: "errors",
    check: "bad-key",
    run: () => expectError(() => openAI({ apiKey: "ig-not-a-key-0000000000" }).invoke(messages)),
  },
  {
    feature: "errors",
    check: "ChatOllama-bad-model",
    run: () => expectError(() => ollama({ model: "no-such-model" }).invoke(ollamaMessages)),
  },
  {
    feature: "tools",
    check: "ChatOpenAI-bindTools",
    run: () => roundTrip(openAI({ model: env.toolsModel, maxTokens: longTokens }), openAIID),
  },
  {
    feature: "tools",
    check: "ChatOllama-bindTools",
    run: () => roundTrip(ollama({ model: env.toolsModel, numPredict: longTokens }), (_, mark) => mark()),
  },
  {
    feature: "structured",
    check: "ChatOpenAI-withStructuredOutput",
    run: async () => {
      const r = await openAI({ maxTokens: longTokens }).withStructuredOutput(person, { name: "person", includeRaw: true }).invoke(personPrompt);
      return { id: openAIID(r.raw), method: "jsonSchema", object: r.parsed, valid: person.safeParse(r.parsed).success, text: text(r.raw) };
    },
  },
  {
    feature: "structured",
    check: "ChatOllama-withStructuredOutput",
    run: async () => {
      const id = rec.mark();
      const r = await ollama({ numPredict: longTokens }).withStructuredOutput(person, { name: "person", includeRaw: true }).invoke(personPrompt);
      return { id: id(), method: "jsonSchema", object: r.parsed, valid: person.safeParse(r.parsed).success, text: text(r.raw) };
    },
  },
  {
    feature: "embeddings",
    check: "OllamaEmbeddings",
    run: async () => {
      const e = new OllamaEmbeddings({ model: env.embedModel, baseUrl: env.url, headers: { Authorization: `Bearer ${env.key}` }, fetch: rec.fetch, maxRetries: env.retries });
      const id = rec.mark();
      const docs = await e.embedDocuments(["idle GPUs", "busy GPUs"]);
      const query = await e.embedQuery("idle GPUs");
      return { id: id(), ...describeVectors(docs), repeat_cosine: cosine(query, docs[0]) };
    },
  },
  {
    feature: "embeddings",
    check: "OpenAIEmbeddings",
    run: async () => {
      const e = new OpenAIEmbeddings({ model: env.embedModel, apiKey: env.key, configuration: { baseURL: `${env.url}/v1`, fetch: rec.fetch }, maxRetries: env.retries });
      const id = rec.mark();
      const docs = await e.embedDocuments(["idle GPUs", "busy GPUs"]);
      return { id: id(), ...describeVectors(docs) };
    },
  },
  {
    feature: "keyless",
    check: "ChatOllama",
    run: async () => {
      const id = rec.mark();
      const m = await ollama({ headers: undefined }).invoke(ollamaMessages);
      return { id: id(), messages: ollamaMessages, max_tokens: env.maxTokens, text: text(m), finish_reason: m.response_metadata?.done_reason, usage: usage(m) };
    },
  },
  {
    feature: "responses",
    check: "ChatOpenAI-useResponsesApi",
    run: async () => {
      const m = await openAI({ useResponsesApi: true }).invoke(messages);
      return { id: openAIID(m), status: m.response_metadata?.status, messages, max_tokens: env.maxTokens, text: text(m), usage: usage(m) };
    },
  },
]);
