"""The official `anthropic` Python SDK against the gateway's Anthropic Messages dialect.

With no scenario queued fake-codex answers "Hello from fake-codex. You said: <last user text>", so the echo
proves the prompt went through; `<<fake {...}>>` directives in the user text script tool calls and reasoning.
"""

from __future__ import annotations

import base64
import json

import anthropic
import pytest

import harness

MODEL = "claude-sonnet-4-6"

# A 1x1 transparent PNG.
PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def make_client(base_url: str, api_key: str = harness.API_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=base_url,
        api_key=api_key,
        max_retries=0,
        timeout=60,
        # This SDK ships its own httpx fork; its default client, without proxies from the environment.
        http_client=anthropic.DefaultHttpxClient(trust_env=False),
    )


@pytest.fixture
def client(gateway) -> anthropic.Anthropic:
    # The SDK appends /v1/messages itself: the base URL is the gateway's root.
    return make_client(gateway.url)


def decode_signature(signature: str) -> dict:
    """The gateway's thinking signature: "cgw1." + base64url(JSON {"id", "ec"}) (dialects/anthropic/signature.rs)."""
    assert signature.startswith("cgw1."), signature[:20]
    payload = signature[len("cgw1."):]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def directive(scenario: dict) -> str:
    return f"<<fake {json.dumps(scenario)}>>"


def test_create_non_stream(client, fake):
    msg = client.messages.create(
        model=MODEL,
        max_tokens=1024,
        system="be brief",
        messages=[{"role": "user", "content": "ping anth-ns-4412"}],
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.model == MODEL
    assert msg.stop_reason == "end_turn"
    assert len(msg.content) == 1 and msg.content[0].type == "text"
    assert "You said: ping anth-ns-4412" in msg.content[0].text
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert msg._request_id, "request-id header"
    body = fake.response_bodies()[-1]
    assert body["model"] == "gpt-5.4"
    # The system text goes upstream as the official client sends its instructions: the first developer message.
    assert "instructions" not in body
    assert body["input"][0]["role"] == "developer" and body["input"][0]["content"][0]["text"] == "be brief"


def test_stream_text_and_final_message(client, fake):
    with client.messages.stream(
        model=MODEL,
        max_tokens=1024,
        messages=[{"role": "user", "content": "stream anth-st-9931"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "You said: stream anth-st-9931" in text
    assert final.content[-1].type == "text"
    assert final.content[-1].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0
    assert final.id.startswith("msg_")


def test_tool_round_trip(client, fake):
    prompt = "weather? " + directive(
        {"kind": "tool_call", "name": "get_weather", "arguments": {"city": "Oslo"}, "text_before": "Checking."}
    )
    messages = [{"role": "user", "content": prompt}]
    with client.messages.stream(model=MODEL, max_tokens=1024, tools=[WEATHER_TOOL], messages=messages) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    uses = [b for b in first.content if b.type == "tool_use"]
    assert len(uses) == 1, first.content
    use = uses[0]
    assert use.name == "get_weather" and use.input == {"city": "Oslo"}

    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "cloudy, 12C"}]},
    ]
    second = client.messages.create(model=MODEL, max_tokens=1024, tools=[WEATHER_TOOL], messages=messages)
    assert "cloudy, 12C" in second.content[0].text
    body = fake.response_bodies()[-1]
    calls = [i for i in body["input"] if i.get("type") == "function_call"]
    outputs = [i for i in body["input"] if i.get("type") == "function_call_output"]
    assert [c["call_id"] for c in calls] == [use.id]
    assert [o["call_id"] for o in outputs] == [use.id]
    assert json.loads(calls[0]["arguments"]) == {"city": "Oslo"}


def test_thinking_round_trip(client, fake):
    thinking = {"type": "enabled", "budget_tokens": 2048}
    prompt = "think " + directive({"kind": "reasoning_then_text", "summary": "Pondering.", "text": "Answer: 42."})
    messages = [{"role": "user", "content": prompt}]
    with client.messages.stream(model=MODEL, max_tokens=4096, thinking=thinking, messages=messages) as stream:
        first = stream.get_final_message()
    kinds = [b.type for b in first.content]
    assert kinds == ["thinking", "text"], kinds
    block = first.content[0]
    assert block.thinking == "Pondering." and block.signature
    assert first.content[1].text == "Answer: 42."
    fake.reset_requests()

    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": "and then?"},
    ]
    second = client.messages.create(model=MODEL, max_tokens=4096, thinking=thinking, messages=messages)
    assert second.stop_reason == "end_turn"
    body = fake.response_bodies()[-1]
    reasoning = [i for i in body["input"] if i.get("type") == "reasoning"]
    assert len(reasoning) == 1, body["input"]
    # The fake verifies that encrypted_content is one it issued, unmodified, to this account (else 400), and
    # the item is the one the signature carries.
    ref = decode_signature(block.signature)
    assert reasoning[0]["id"] == ref["id"]
    assert reasoning[0]["encrypted_content"] == ref["ec"]


def test_image_base64(client, fake):
    msg = client.messages.create(
        model=MODEL,
        max_tokens=1024,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_1X1}},
                ],
            }
        ],
    )
    assert "[saw 1 image(s)]" in msg.content[0].text
    part = fake.response_bodies()[-1]["input"][0]["content"][1]
    assert part["type"] == "input_image"
    assert part["image_url"] == f"data:image/png;base64,{PNG_1X1}"


def test_count_tokens(client, fake):
    small = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hello world"}])
    big = client.messages.count_tokens(
        model=MODEL,
        system="You are a careful assistant. " * 50,
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "hello world"}],
    )
    assert small.input_tokens > 0
    assert big.input_tokens > small.input_tokens + 200
    beta = client.beta.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hello world"}])
    assert beta.input_tokens == small.input_tokens
    assert fake.response_bodies() == [], "count_tokens is answered locally"


def test_unknown_model_is_not_found(client, fake):
    with pytest.raises(anthropic.NotFoundError) as e:
        client.messages.create(model="claude-unknown-9", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404
    assert e.value.body["error"]["type"] == "not_found_error"
    assert "claude-unknown-9" in e.value.body["error"]["message"]
    assert e.value.request_id


def test_wrong_key_is_authentication_error(gateway, fake):
    bad = make_client(gateway.url, api_key="not-the-key")
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert e.value.body["error"]["type"] == "authentication_error"
    assert fake.response_bodies() == []


def test_context_overflow_is_bad_request_prompt_too_long(client, fake):
    prompt = "x " + directive({"kind": "context_length_exceeded"})
    with pytest.raises(anthropic.BadRequestError) as e:
        client.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": prompt}])
    assert e.value.body["error"]["message"].startswith("prompt is too long")


# --- every stream the fake can produce is accepted by the SDK's accumulator ---------------------------------

SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search"}


def _random_composition(rng) -> tuple[list[dict], dict]:
    items = []
    for _ in range(rng.randint(0, 4)):
        kind = rng.choice(["reasoning", "text", "function_call", "web_search_call"])
        if kind == "reasoning":
            items.append({"type": "reasoning", "summary": rng.choice(["", "Short thought.", "Step 1.\n\nStep 2."])})
        elif kind == "text":
            items.append({"type": "text", "text": rng.choice(["Hi.", "A longer answer, with \"quotes\" and ünïcode.", "x" * 50])})
        elif kind == "function_call":
            args = rng.choice([{}, {"city": "Oslo"}, {"city": "Lima", "days": 3, "nested": {"a": [1, 2]}}])
            items.append({"type": "function_call", "name": "get_weather", "arguments": args})
        else:
            items.append({"type": "web_search_call", "query": "weather in Oslo"})
    end = rng.choice(
        [{"type": "completed"}] * 3
        + [{"type": "incomplete", "reason": "max_output_tokens"}, {"type": "incomplete", "reason": "content_filter"}]
        + [{"type": "failed", "code": "server_error", "message": "boom"}, {"type": "cut"}]
    )
    return items, end


@pytest.mark.parametrize("seed", range(40))
def test_any_fake_stream_is_accepted_by_the_sdk_accumulator(client, fake, seed):
    import random

    rng = random.Random(seed)
    items, end = _random_composition(rng)
    thinking = rng.choice([True, False])
    fake.enqueue({"kind": "custom", "items": items, "end": end, "completed_output": rng.choice([True, False])})
    kwargs = {
        "model": MODEL,
        "max_tokens": 4096,
        "tools": [WEATHER_TOOL, SEARCH_TOOL],
        "messages": [{"role": "user", "content": f"sweep {seed}"}],
    }
    if thinking:
        kwargs["thinking"] = {"type": "enabled", "budget_tokens": 2048}
    # The content filter's end before any output is a policy refusal (docs/accounts.md, "Risk signals"): the
    # client gets it as an error, in Anthropic's shape, and the conversation stays on its account.
    if end.get("reason") == "content_filter" and not items:
        with pytest.raises(anthropic.BadRequestError) as refused:
            with client.messages.stream(**kwargs) as stream:
                stream.get_final_message()
        assert refused.value.body["error"]["type"] == "invalid_request_error"
        assert "content filter" in refused.value.body["error"]["message"]
        return
    failing = end["type"] in ("failed", "cut")
    if failing:
        # Before any output: an HTTP error; after: an `event: error` the SDK raises on. Never a clean end.
        with pytest.raises(anthropic.APIError):
            with client.messages.stream(**kwargs) as stream:
                for _ in stream:
                    pass
                stream.get_final_message()
        return
    with client.messages.stream(**kwargs) as stream:
        streamed_text = "".join(stream.text_stream)
        final = stream.get_final_message()
    types = [b.type for b in final.content]
    expected = []
    for item in items:
        if item["type"] == "reasoning":
            if thinking:
                expected.append("thinking")
        elif item["type"] == "text":
            expected.append("text")
        elif item["type"] == "function_call":
            expected.append("tool_use")
        else:
            expected += ["server_tool_use", "web_search_tool_result"]
    assert types == expected, (items, types)
    texts_ = [i["text"] for i in items if i["type"] == "text"]
    assert "".join(b.text for b in final.content if b.type == "text") == "".join(texts_)
    assert streamed_text == "".join(texts_)
    calls = [i for i in items if i["type"] == "function_call"]
    uses = [b for b in final.content if b.type == "tool_use"]
    assert [u.input for u in uses] == [c["arguments"] for c in calls]
    assert len({u.id for u in uses}) == len(uses)
    for b in final.content:
        if b.type == "thinking":
            assert b.signature.startswith("cgw1.")
    if end["type"] == "completed":
        assert final.stop_reason == ("tool_use" if calls else "end_turn")
    elif end["reason"] == "max_output_tokens":
        assert final.stop_reason == "max_tokens"
    else:
        assert final.stop_reason == "refusal"
    assert final.usage.output_tokens >= 0 and final.usage.input_tokens >= 0
