// Gemini JS clients streaming through codex-gateway (+ fake-codex): the official `@google/genai` SDK and the
// AI SDK's `@ai-sdk/google` provider (which validates every chunk with a strict schema).
import assert from "node:assert/strict";

import { createGoogleGenerativeAI } from "@ai-sdk/google";
import { GoogleGenAI } from "@google/genai";
import { streamText } from "ai";

import { API_KEY, useStack } from "./harness.mjs";

const MODEL = "gemini-2.5-flash";

let stack;
const gwTest = useStack({}, (s) => {
  stack = s;
});



function genai() {
  return new GoogleGenAI({ apiKey: API_KEY, httpOptions: { baseUrl: stack.gateway.url, apiVersion: "v1beta" } });
}

gwTest("@google/genai generateContentStream: text chunks, finishReason and usage on the last", async () => {
  await stack.fake.enqueue({ kind: "text", text: "alpha beta gamma delta", deltas: 4 });
  const stream = await genai().models.generateContentStream({ model: MODEL, contents: "count for me" });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.ok(chunks.length >= 2, `chunks: ${chunks.length}`);
  assert.equal(chunks.map((c) => c.text ?? "").join(""), "alpha beta gamma delta");
  const last = chunks.at(-1);
  assert.equal(last.candidates[0].finishReason, "STOP");
  assert.ok(last.usageMetadata.totalTokenCount > 0);
  const bodies = await stack.fake.responseBodies();
  assert.equal(bodies.length, 1);
  assert.equal(bodies[0].model, "gpt-5.4");
});

gwTest("@google/genai stream: a function call arrives whole with its id", async () => {
  await stack.fake.enqueue({ kind: "tool_call", name: "get_weather", arguments: { city: "Oslo" } });
  const stream = await genai().models.generateContentStream({
    model: MODEL,
    contents: "weather in Oslo?",
    config: {
      tools: [{ functionDeclarations: [{ name: "get_weather", parametersJsonSchema: { type: "object", properties: { city: { type: "string" } } } }] }],
    },
  });
  const calls = [];
  for await (const chunk of stream) calls.push(...(chunk.functionCalls ?? []));
  assert.equal(calls.length, 1);
  assert.equal(calls[0].name, "get_weather");
  assert.deepEqual(calls[0].args, { city: "Oslo" });
  assert.ok(calls[0].id);
});

gwTest("@ai-sdk/google streamText: text deltas and finish reason", async () => {
  const google = createGoogleGenerativeAI({ baseURL: `${stack.gateway.url}/v1beta`, apiKey: API_KEY });
  const result = streamText({ model: google(MODEL), prompt: "hello ai-sdk-google-9191", maxRetries: 0 });
  let text = "";
  for await (const delta of result.textStream) text += delta;
  assert.match(text, /You said: hello ai-sdk-google-9191/);
  assert.equal(await result.finishReason, "stop");
  const usage = await result.usage;
  assert.ok(usage.inputTokens > 0, JSON.stringify(usage));
});

gwTest("@google/genai stream: a failure after output began raises", async () => {
  await stack.fake.enqueue({
    kind: "custom",
    items: [{ type: "text", text: "partial answer" }],
    end: { type: "failed", code: "server_is_overloaded", message: "busy" },
  });
  const stream = await genai().models.generateContentStream({ model: MODEL, contents: "x" });
  let text = "";
  await assert.rejects(async () => {
    for await (const chunk of stream) text += chunk.text ?? "";
  }, (err) => {
    assert.match(String(err.message ?? err), /busy|UNAVAILABLE|503/);
    return true;
  });
  assert.match(text, /^partial/);
});
