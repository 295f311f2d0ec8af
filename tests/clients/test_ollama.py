"""The official `ollama` Python client (and the OpenAI SDK) against the gateway's Ollama bridge.

The bridge is a second listener (CODEX_GATEWAY_OLLAMA_ENABLED=1, port 0 here) without client auth; this module
starts its own fake-codex + gateway with it enabled and reads the bridge's address from the gateway's stdout.
"""

from __future__ import annotations

import json
import os

import httpx
import ollama
import openai
import pytest

import harness

MODEL = "gpt-5.4"


@pytest.fixture(scope="module")
def bridge_stack(tmp_path_factory):
    try:
        stack = harness.Stack.start(tmp_path_factory.mktemp("ollama-stack"), ollama=True)
    except RuntimeError as e:
        pytest.fail(f"could not start fake-codex + codex-gateway with the Ollama bridge:\n{e}", pytrace=False)
    yield stack
    stack.stop()


@pytest.fixture
def fake(bridge_stack) -> harness.Fake:
    bridge_stack.fake.reset_requests()
    return bridge_stack.fake


@pytest.fixture
def client(bridge_stack) -> ollama.Client:
    assert bridge_stack.gateway.ollama, "the gateway printed no bridge address"
    return ollama.Client(host=bridge_stack.gateway.ollama, trust_env=False, timeout=60)


def test_chat_not_streamed(client, fake):
    resp = client.chat(model=MODEL, messages=[{"role": "user", "content": "hello ollama-plain-77"}], stream=False)
    assert "You said: hello ollama-plain-77" in resp.message.content
    assert resp.done is True and resp.done_reason == "stop"
    assert resp.prompt_eval_count > 0 and resp.eval_count > 0 and resp.total_duration > 0
    assert fake.response_bodies()[-1]["model"] == MODEL


def test_chat_streamed_with_thinking(client, fake):
    fake.enqueue({"kind": "reasoning_then_text", "summary": "weighing it", "text": "streamed answer here"})
    parts = list(client.chat(model=MODEL, messages=[{"role": "user", "content": "x"}], stream=True, think=True))
    assert len(parts) >= 3
    assert "".join(p.message.content or "" for p in parts) == "streamed answer here"
    assert "".join(p.message.thinking or "" for p in parts) == "weighing it"
    assert all(not p.done for p in parts[:-1])
    assert parts[-1].done and parts[-1].done_reason == "stop" and parts[-1].eval_count > 0


def get_weather(city: str) -> str:
    """Current weather for a city.

    Args:
      city: The city name
    """
    return f"sunny in {city}"


def test_tool_call_round_trip(client, fake):
    fake.enqueue({"kind": "tool_call", "name": "get_weather", "arguments": {"city": "Paris"}})
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    resp = client.chat(model=MODEL, messages=messages, tools=[get_weather], stream=False)
    calls = resp.message.tool_calls or []
    assert len(calls) == 1, resp
    assert calls[0].function.name == "get_weather"
    assert dict(calls[0].function.arguments) == {"city": "Paris"}
    sent_tools = fake.response_bodies()[-1]["tools"]
    assert sent_tools[0]["name"] == "get_weather"
    assert sent_tools[0]["parameters"]["properties"]["city"]["type"] == "string"

    messages.append(resp.message)
    messages.append({"role": "tool", "tool_name": "get_weather", "content": get_weather(**calls[0].function.arguments)})
    final = client.chat(model=MODEL, messages=messages, tools=[get_weather], stream=False)
    assert "Tool result: sunny in Paris" in final.message.content
    items = fake.response_bodies()[-1]["input"]
    fc = [i for i in items if i["type"] == "function_call"]
    fco = [i for i in items if i["type"] == "function_call_output"]
    assert len(fc) == 1 and len(fco) == 1 and fc[0]["call_id"] == fco[0]["call_id"]


def test_format_json(client, fake):
    resp = client.chat(model=MODEL, messages=[{"role": "user", "content": "json"}], format="json", stream=False)
    assert json.loads(resp.message.content) == {"answer": "ok"}
    assert fake.response_bodies()[-1]["text"]["format"] == {"type": "json_object"}
    schema = {"type": "object", "properties": {"color": {"type": "string"}}, "required": ["color"]}
    resp = client.generate(model=MODEL, prompt="a color", format=schema, stream=False)
    assert isinstance(json.loads(resp.response)["color"], str)


def test_list_and_show(client):
    names = [m.model for m in client.list().models]
    assert MODEL in names, names
    info = client.show(MODEL)
    arch = info.modelinfo["general.architecture"]
    assert info.modelinfo[f"{arch}.context_length"] > 100_000
    assert {"completion", "tools"} <= set(info.capabilities or [])
    with pytest.raises(ollama.ResponseError) as e:
        client.show("no-such-model")
    assert e.value.status_code == 404


def test_openai_sdk_on_the_bridge(bridge_stack, fake):
    c = openai.OpenAI(
        base_url=bridge_stack.gateway.ollama + "/v1",
        api_key="ollama",  # ignored: the bridge has no auth
        max_retries=0,
        http_client=httpx.Client(trust_env=False, timeout=60),
    )
    resp = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "via the bridge /v1"}])
    assert "You said: via the bridge /v1" in resp.choices[0].message.content
    assert MODEL in [m.id for m in c.models.list().data]


# issue 72: the recorded streams in which the model generates an image (shared/replay, read at test time).
IMAGE_CAPTURES = ["l-image-generation-stream.sse", "v-openai-image-generation.sse"]
NOTE_START = "[The model generated an image here ("


def _recording(name: str) -> str:
    base = os.environ.get("CODEX_GATEWAY_REPLAY_DIR") or os.path.join(harness.REPO, "..", "shared", "replay")
    path = os.path.join(base, "captures", name)
    if not os.path.exists(path):
        pytest.skip(f"no recording {path} (set CODEX_GATEWAY_REPLAY_DIR)")
    with open(path, encoding="utf-8") as f:
        return f.read()


def _recorded_images(sse: str) -> list[str]:
    """The base64 of each image the recorded stream's model generated."""
    out = []
    for line in sse.splitlines():
        if not line.startswith("data: "):
            continue
        try:
            event = json.loads(line[len("data: "):])
        except ValueError:
            continue
        item = event.get("item") or {}
        if event.get("type") == "response.output_item.done" and item.get("type") == "image_generation_call":
            out.append(item.get("result") or "")
    return [b64 for b64 in out if b64]


@pytest.mark.parametrize("capture", IMAGE_CAPTURES)
@pytest.mark.parametrize("stream", [False, True])
def test_generated_images_reach_the_official_client(client, fake, capture, stream):
    """A chat answer cannot carry a generated image in a form ollama-python reads (its `Message.images` takes
    `Image` objects, which a base64 string fails to validate as): the answer parses, carries no image and says
    where one was left out. `/api/generate` gives it in `image`, which `GenerateResponse` reads."""
    sse = _recording(capture)
    images = _recorded_images(sse)
    assert images, f"{capture} has a generated image"

    fake.enqueue({"kind": "replay", "sse": sse})
    messages = [{"role": "user", "content": "draw"}]
    if stream:
        parts = list(client.chat(model=MODEL, messages=messages, stream=True))
        text = "".join(p.message.content or "" for p in parts)
        assert all(not p.message.images for p in parts)
        assert parts[-1].done
    else:
        resp = client.chat(model=MODEL, messages=messages, stream=False)
        text = resp.message.content or ""
        assert not resp.message.images and resp.done
    assert text.count(NOTE_START) == len(images), text
    # The answer goes back in the next turn as the client holds it.
    fake.enqueue({"kind": "text", "text": "noted"})
    later = messages + [{"role": "assistant", "content": text}, {"role": "user", "content": "ok"}]
    again = client.chat(model=MODEL, messages=later, stream=False)
    assert again.message.content == "noted"

    fake.enqueue({"kind": "replay", "sse": sse})
    if stream:
        parts = list(client.generate(model=MODEL, prompt="draw", stream=True))
        given = [p.image for p in parts if p.image]
        assert parts[-1].done
    else:
        resp = client.generate(model=MODEL, prompt="draw", stream=False)
        given = [resp.image] if resp.image else []
    assert given == (images if stream else images[:1]), [len(g) for g in given]
