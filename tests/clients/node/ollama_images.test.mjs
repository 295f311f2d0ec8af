// The official `ollama` JS client against the gateway's Ollama bridge, on the recorded streams in which the model
// generates an image (issue 72; ../shared/replay, read at test time). A chat answer carries no image (ollama-js
// would send `message.images` back as input images in the next turn) and says in its text where one was left out;
// `/api/generate` gives it in `image`.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

import { Ollama } from "ollama";

import { REPO, useStack } from "./harness.mjs";

const MODEL = "gpt-5.4";
const CAPTURES = ["l-image-generation-stream.sse", "v-openai-image-generation.sse"];
const NOTE_START = "[The model generated an image here (";
const REPLAY_DIR = process.env.CODEX_GATEWAY_REPLAY_DIR ?? join(REPO, "..", "shared", "replay");

let stack;
let client;
const gwTest = useStack({ ollama: true }, (s) => {
  stack = s;
  assert.ok(stack.gateway.ollama, "the gateway printed no bridge address");
  client = new Ollama({ host: stack.gateway.ollama });
});

/** The base64 of each image a recorded stream's model generated. */
function recordedImages(sse) {
  const out = [];
  for (const line of sse.split("\n")) {
    if (!line.startsWith("data: ")) continue;
    let event;
    try {
      event = JSON.parse(line.slice("data: ".length));
    } catch {
      continue;
    }
    const item = event.item ?? {};
    if (event.type === "response.output_item.done" && item.type === "image_generation_call" && item.result) {
      out.push(item.result);
    }
  }
  return out;
}

const count = (text, part) => text.split(part).length - 1;

for (const capture of CAPTURES) {
  for (const stream of [false, true]) {
    gwTest(`${capture} ${stream ? "streamed" : "whole"}: a note in a chat, the image in generate`, async (t) => {
      const path = join(REPLAY_DIR, "captures", capture);
      if (!existsSync(path)) return t.skip(`no recording ${path} (set CODEX_GATEWAY_REPLAY_DIR)`);
      const sse = readFileSync(path, "utf8");
      const images = recordedImages(sse);
      assert.ok(images.length > 0, `${capture} has a generated image`);

      await stack.fake.enqueue({ kind: "replay", sse });
      const messages = [{ role: "user", content: "draw" }];
      let text = "";
      if (stream) {
        const parts = [];
        for await (const part of await client.chat({ model: MODEL, messages, stream: true })) parts.push(part);
        assert.ok(parts.every((p) => !p.message.images), "no images in a chat message");
        assert.equal(parts.at(-1).done, true);
        text = parts.map((p) => p.message.content ?? "").join("");
      } else {
        const resp = await client.chat({ model: MODEL, messages, stream: false });
        assert.equal(resp.message.images, undefined);
        text = resp.message.content;
      }
      assert.equal(count(text, NOTE_START), images.length, text);

      // The answer goes back in the next turn as the client holds it.
      await stack.fake.enqueue({ kind: "text", text: "noted" });
      const later = [...messages, { role: "assistant", content: text }, { role: "user", content: "ok" }];
      const again = await client.chat({ model: MODEL, messages: later, stream: false });
      assert.equal(again.message.content, "noted");

      await stack.fake.enqueue({ kind: "replay", sse });
      let given;
      if (stream) {
        const parts = [];
        for await (const part of await client.generate({ model: MODEL, prompt: "draw", stream: true })) parts.push(part);
        assert.equal(parts.at(-1).done, true);
        given = parts.filter((p) => p.image).map((p) => p.image);
        assert.deepEqual(given, images);
      } else {
        const resp = await client.generate({ model: MODEL, prompt: "draw", stream: false });
        assert.equal(resp.image, images[0]);
      }
    });
  }
}
