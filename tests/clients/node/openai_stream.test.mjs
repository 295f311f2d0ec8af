// The official `openai` Node SDK streaming Chat Completions through codex-gateway (+ fake-codex).
import assert from "node:assert/strict";

import OpenAI from "openai";

import { API_KEY, useStack } from "./harness.mjs";

const MODEL = "gpt-5.4";
const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather for a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

let stack;
let client;
const gwTest = useStack({}, (s) => {
  stack = s;
  client = new OpenAI({ baseURL: stack.gateway.v1, apiKey: API_KEY, maxRetries: 0, timeout: 60_000 });
});



gwTest("chat stream: one role delta, text, finish_reason, usage chunk", async () => {
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: "user", content: "ping node-stream-6061" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.ok(chunks.length > 0, "no chunks");
  assert.equal(new Set(chunks.map((c) => c.id)).size, 1, "chunk ids differ");
  for (const c of chunks) assert.equal(c.object, "chat.completion.chunk");

  const withChoices = chunks.filter((c) => c.choices.length > 0);
  const roles = withChoices.filter((c) => c.choices[0].delta.role != null);
  assert.equal(roles.length, 1, "exactly one delta carries the role");
  assert.equal(roles[0], withChoices[0], "the role comes first");
  assert.equal(roles[0].choices[0].delta.role, "assistant");

  const text = withChoices.map((c) => c.choices[0].delta.content ?? "").join("");
  assert.match(text, /You said: ping node-stream-6061/);
  const finishes = withChoices.map((c) => c.choices[0].finish_reason).filter(Boolean);
  assert.deepEqual(finishes, ["stop"]);

  const usage = chunks.filter((c) => c.usage != null);
  assert.equal(usage.length, 1, "one usage chunk");
  assert.deepEqual(usage[0].choices, []);
  assert.equal(usage[0], chunks.at(-1), "the usage chunk comes last");
  assert.ok(usage[0].usage.prompt_tokens > 0 && usage[0].usage.completion_tokens > 0);
});

gwTest("chat stream helper: text via finalChatCompletion", async () => {
  const runner = client.chat.completions.stream({
    model: MODEL,
    messages: [{ role: "user", content: "ping node-helper-1212" }],
  });
  let deltas = "";
  runner.on("content", (delta) => { deltas += delta; });
  const final = await runner.finalChatCompletion();
  assert.match(final.choices[0].message.content ?? "", /You said: ping node-helper-1212/);
  assert.equal(final.choices[0].message.content, deltas);
  assert.equal(final.choices[0].finish_reason, "stop");
});

gwTest("chat stream: tool call accumulated by the SDK's stream helper", async () => {
  await stack.fake.enqueue({ kind: "tool_call", name: "get_weather", arguments: { city: "Paris" } });
  const runner = client.chat.completions.stream({
    model: MODEL,
    messages: [{ role: "user", content: "What is the weather in Paris?" }],
    tools: [WEATHER_TOOL],
  });
  const doneArgs = [];
  runner.on("tool_calls.function.arguments.done", (ev) => doneArgs.push(ev));
  const final = await runner.finalChatCompletion();
  const choice = final.choices[0];
  assert.equal(choice.finish_reason, "tool_calls");
  const calls = choice.message.tool_calls ?? [];
  assert.equal(calls.length, 1);
  assert.ok(calls[0].id, "tool call id");
  assert.equal(calls[0].type, "function");
  assert.equal(calls[0].function.name, "get_weather");
  assert.deepEqual(JSON.parse(calls[0].function.arguments), { city: "Paris" });
  assert.equal(doneArgs.length, 1);
  assert.equal(doneArgs[0].name, "get_weather");

  // Round trip: the tool's result goes back and the fake answers "Tool result: ...".
  const second = await client.chat.completions.create({
    model: MODEL,
    messages: [
      { role: "user", content: "What is the weather in Paris?" },
      choice.message,
      { role: "tool", tool_call_id: calls[0].id, content: "cloudy, 12C" },
    ],
    tools: [WEATHER_TOOL],
    stream: true,
  });
  let text = "";
  for await (const chunk of second) text += chunk.choices[0]?.delta?.content ?? "";
  assert.match(text, /Tool result: cloudy, 12C/);

  const bodies = await stack.fake.responseBodies();
  assert.equal(bodies.length, 2);
  const items = bodies[1].input;
  const fc = items.filter((i) => i.type === "function_call");
  const fco = items.filter((i) => i.type === "function_call_output");
  assert.equal(fc.length, 1);
  assert.equal(fco.length, 1);
  assert.equal(fc[0].call_id, calls[0].id);
  assert.equal(fco[0].call_id, calls[0].id);
});
