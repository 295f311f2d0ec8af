// The AI SDK's `@ai-sdk/anthropic` provider streaming through codex-gateway (+ fake-codex). The provider
// validates every SSE event against a strict schema, so an event out of shape fails the stream.
import assert from "node:assert/strict";

import { createAnthropic } from "@ai-sdk/anthropic";
import { jsonSchema, streamText, tool } from "ai";

import { API_KEY, useStack } from "./harness.mjs";

const MODEL = "claude-sonnet-4-6";

let stack;
// Keepalives every second, so the silence test sees `event: ping` frames mid-stream.
const gwTest = useStack({ gatewayEnv: { CODEX_GATEWAY_KEEPALIVE_SECS: "1" } }, (s) => {
  stack = s;
});



function anthropic() {
  // The provider appends /messages to its base URL.
  return createAnthropic({ baseURL: `${stack.gateway.url}/v1`, apiKey: API_KEY });
}

gwTest("@ai-sdk/anthropic streamText: text deltas, finish reason, usage", async () => {
  await stack.fake.enqueue({ kind: "text", text: "alpha beta gamma delta", deltas: 4 });
  const result = streamText({ model: anthropic()(MODEL), prompt: "count for me", maxRetries: 0 });
  let text = "";
  for await (const delta of result.textStream) text += delta;
  assert.equal(text, "alpha beta gamma delta");
  assert.equal(await result.finishReason, "stop");
  const usage = await result.usage;
  assert.ok(usage.inputTokens > 0 && usage.outputTokens > 0, JSON.stringify(usage));
  const bodies = await stack.fake.responseBodies();
  assert.equal(bodies.length, 1);
  assert.equal(bodies[0].model, "gpt-5.4");
});

gwTest("@ai-sdk/anthropic streamText: reasoning is shown as reasoning parts", async () => {
  await stack.fake.enqueue({ kind: "reasoning_then_text", summary: "Thinking hard.", text: "Result." });
  const result = streamText({
    model: anthropic()(MODEL),
    prompt: "think",
    maxRetries: 0,
    providerOptions: { anthropic: { thinking: { type: "enabled", budgetTokens: 2048 } } },
  });
  let text = "";
  for await (const delta of result.textStream) text += delta;
  assert.equal(text, "Result.");
  assert.equal(await result.reasoningText, "Thinking hard.");
});

gwTest("@ai-sdk/anthropic streamText: one tool call with parsed input", async () => {
  await stack.fake.enqueue({
    kind: "tool_call",
    name: "get_weather",
    arguments: { city: "Oslo" },
    text_before: "Let me check.",
  });
  const result = streamText({
    model: anthropic()(MODEL),
    prompt: "weather in Oslo?",
    maxRetries: 0,
    tools: {
      get_weather: tool({
        description: "Current weather for a city",
        inputSchema: jsonSchema({ type: "object", properties: { city: { type: "string" } }, required: ["city"] }),
      }),
    },
  });
  const parts = [];
  for await (const part of result.fullStream) {
    if (part.type === "error") throw part.error;
    parts.push(part);
  }
  const calls = parts.filter((p) => p.type === "tool-call");
  assert.equal(calls.length, 1, JSON.stringify(parts.map((p) => p.type)));
  assert.equal(calls[0].toolName, "get_weather");
  assert.deepEqual(calls[0].input, { city: "Oslo" });
  assert.ok(calls[0].toolCallId);
  assert.equal(await result.finishReason, "tool-calls");
  assert.equal(await result.text, "Let me check.");
  const body = (await stack.fake.responseBodies())[0];
  assert.equal(body.tools[0].name, "get_weather");
});

gwTest("@ai-sdk/anthropic streamText: ping keepalives during upstream silence are accepted", async () => {
  await stack.fake.enqueue({ kind: "silence", ms: 2500, then: { kind: "text", text: "late answer" } });
  const result = streamText({ model: anthropic()(MODEL), prompt: "wait for it", maxRetries: 0 });
  const parts = [];
  for await (const part of result.fullStream) {
    if (part.type === "error") throw part.error;
    parts.push(part);
  }
  assert.equal(await result.text, "late answer");
  assert.equal(await result.finishReason, "stop");
});
