"""The official `ollama` Python client (and the OpenAI SDK) against the gateway's Ollama bridge.

The bridge is a second listener (CODEX_GATEWAY_OLLAMA_ENABLED=1, port 0 here) without client auth; this module
starts its own fake-codex + gateway with it enabled and reads the bridge's address from the gateway's stdout.
"""

from __future__ import annotations

import json

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
