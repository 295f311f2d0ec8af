"""The official `openai` Python SDK against the gateway's OpenAI dialects (Chat Completions, Responses, models).

The gateway talks to fake-codex; with no scenario queued the fake answers
"Hello from fake-codex. You said: <last user text>", so the echo proves the prompt went through.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from pydantic import BaseModel

import harness

MODEL = "gpt-5.4"

# A 1x1 transparent PNG.
PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def make_client(base_url: str, api_key: str = harness.API_KEY) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=base_url,
        api_key=api_key,
        max_retries=0,
        timeout=60,
        http_client=httpx.Client(trust_env=False, timeout=60),
    )


@pytest.fixture
def client(gateway) -> openai.OpenAI:
    return make_client(gateway.v1)


def last_upstream_body(fake) -> dict:
    bodies = fake.response_bodies()
    assert bodies, "the gateway sent no POST .../responses to fake-codex"
    return bodies[-1]


# --- Chat Completions ---------------------------------------------------------------------------------


def test_chat_non_stream_echoes_prompt_with_usage(client, fake):
    resp = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "ping chat-ns-7781"}]
    )
    assert resp.object == "chat.completion"
    assert len(resp.choices) == 1
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert "You said: ping chat-ns-7781" in (choice.message.content or "")
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens > 0
    assert resp.usage.completion_tokens > 0
    assert resp.usage.total_tokens > 0
    body = last_upstream_body(fake)
    assert body["model"] == MODEL
    assert body["stream"] is True and body["store"] is False


def test_chat_stream_one_role_delta_finish_and_usage_chunk(client, fake):
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "ping chat-stream-4410"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks, "no chunks"
    ids = {c.id for c in chunks}
    assert len(ids) == 1, f"chunk ids differ: {ids}"
    assert all(c.object == "chat.completion.chunk" for c in chunks)

    with_choices = [c for c in chunks if c.choices]
    role_deltas = [c for c in with_choices if c.choices[0].delta.role is not None]
    assert len(role_deltas) == 1, f"expected exactly one role delta, got {len(role_deltas)}"
    assert role_deltas[0].choices[0].delta.role == "assistant"
    assert with_choices[0] is role_deltas[0], "the role must come in the first delta"

    text = "".join(c.choices[0].delta.content or "" for c in with_choices)
    assert "You said: ping chat-stream-4410" in text

    finishes = [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason]
    assert finishes == ["stop"], f"finish reasons: {finishes}"
    assert with_choices[-1].choices[0].finish_reason == "stop"

    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1, f"expected one usage chunk, got {len(usage_chunks)}"
    u = usage_chunks[0]
    assert u.choices == []
    assert u is chunks[-1], "the usage chunk comes last"
    assert u.usage.prompt_tokens > 0 and u.usage.completion_tokens > 0 and u.usage.total_tokens > 0


def test_chat_tool_round_trip(client, fake):
    fake.enqueue({"kind": "tool_call", "name": "get_weather", "arguments": {"city": "Paris"}})
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"})
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])
    answer = second.choices[0].message.content or ""
    assert "Tool result:" in answer and "sunny, 21C" in answer
    assert second.choices[0].finish_reason == "stop"

    bodies = fake.response_bodies()
    assert len(bodies) == 2, f"expected 2 upstream requests, got {len(bodies)}"
    tools = bodies[0].get("tools") or []
    assert any(t.get("type") == "function" and t.get("name") == "get_weather" for t in tools), tools
    items = bodies[1]["input"]
    fcalls = [i for i in items if i.get("type") == "function_call"]
    outputs = [i for i in items if i.get("type") == "function_call_output"]
    assert len(fcalls) == 1 and len(outputs) == 1, items
    assert fcalls[0]["call_id"] == call.id == outputs[0]["call_id"]
    assert fcalls[0]["name"] == "get_weather"
    assert json.loads(fcalls[0]["arguments"]) == {"city": "Paris"}
    assert outputs[0]["output"] == "sunny, 21C" or "sunny, 21C" in json.dumps(outputs[0]["output"])
    assert items.index(fcalls[0]) < items.index(outputs[0])


def test_chat_stream_tool_call_with_stream_helper(client, fake):
    fake.enqueue({"kind": "tool_call", "name": "get_weather", "arguments": {"city": "Paris"}})
    with client.chat.completions.stream(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris, please"}],
        tools=[WEATHER_TOOL],
    ) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in events, events
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls and len(calls) == 1
    assert calls[0].id
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}


def test_chat_stream_parallel_tool_calls_indexed_from_zero(client, fake):
    fake.enqueue(
        {
            "kind": "tool_calls",
            "calls": [
                {"name": "get_weather", "arguments": {"city": "Paris"}},
                {"name": "get_weather", "arguments": {"city": "Oslo"}},
            ],
        }
    )
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Weather in Paris and Oslo"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    firsts: dict[int, object] = {}
    args: dict[int, str] = {}
    finishes = []
    for chunk in stream:
        if not chunk.choices:
            continue
        ch = chunk.choices[0]
        if ch.finish_reason:
            finishes.append(ch.finish_reason)
        for tc in ch.delta.tool_calls or []:
            if tc.index not in firsts:
                firsts[tc.index] = tc
                assert tc.id and tc.type == "function" and tc.function.name == "get_weather", tc
            else:
                assert tc.id is None and (tc.function is None or tc.function.name is None), (
                    f"id/name repeated in a later delta: {tc}"
                )
            args[tc.index] = args.get(tc.index, "") + ((tc.function and tc.function.arguments) or "")
    assert sorted(firsts) == [0, 1], f"tool call indexes: {sorted(firsts)}"
    assert firsts[0].id != firsts[1].id
    assert [json.loads(args[0]), json.loads(args[1])] == [{"city": "Paris"}, {"city": "Oslo"}]
    assert finishes == ["tool_calls"]


def test_chat_reasoning_summary_stays_out_of_content(client, fake):
    fake.enqueue({"kind": "reasoning_then_text", "summary": "secret-thoughts-77", "text": "The answer is 42."})
    resp = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "answer?"}])
    assert resp.choices[0].message.content == "The answer is 42."
    assert resp.choices[0].finish_reason == "stop"


def test_chat_stream_cut_upstream_is_an_error_not_a_clean_end(client, fake):
    # After output began the gateway can no longer change the status: it must say so in the stream
    # (data: {"error": ...}), which the SDK raises as APIError, instead of ending as if complete.
    fake.enqueue({"kind": "cut", "after_deltas": 2})
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "tell me a long story"}], stream=True
    )
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


class CityWeather(BaseModel):
    city: str
    temperature_c: float
    sunny: bool


def test_chat_parse_pydantic_response_format(client, fake):
    completion = client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Give me the weather in Rome as JSON"}],
        response_format=CityWeather,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, CityWeather)
    body = last_upstream_body(fake)
    fmt = (body.get("text") or {}).get("format") or {}
    assert fmt.get("type") == "json_schema", body.get("text")
    assert fmt.get("name") == "CityWeather"
    assert set(fmt["schema"]["properties"]) == {"city", "temperature_c", "sunny"}


def test_chat_image_data_url(client, fake):
    resp = client.chat.completions.create(
        model=MODEL,
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_1X1}"}},
                ],
            }
        ],
    )
    assert "[saw 1 image(s)]" in (resp.choices[0].message.content or "")
    body = last_upstream_body(fake)
    parts = [p for item in body["input"] if item.get("role") == "user" for p in item.get("content") or []]
    images = [p for p in parts if p.get("type") == "input_image"]
    assert len(images) == 1 and images[0]["image_url"] == f"data:image/png;base64,{PNG_1X1}"


def test_chat_reasoning_effort_from_model_suffix(client, fake):
    resp = client.chat.completions.create(
        model=f"{MODEL}-high", messages=[{"role": "user", "content": "think hard"}]
    )
    assert "You said: think hard" in (resp.choices[0].message.content or "")
    body = last_upstream_body(fake)
    assert body["model"] == MODEL
    assert (body.get("reasoning") or {}).get("effort") == "high", body.get("reasoning")


# --- Responses ----------------------------------------------------------------------------------------


def test_responses_create_non_stream(client, fake):
    # fake-codex leaves response.completed.output empty (like the real backend): the gateway must
    # assemble the answer from the output_item.done events.
    resp = client.responses.create(model=MODEL, input="ping responses-ns-5521")
    assert resp.status == "completed"
    assert "You said: ping responses-ns-5521" in resp.output_text
    assert resp.usage is not None and resp.usage.total_tokens > 0
    body = last_upstream_body(fake)
    assert body["stream"] is True and body["store"] is False


def test_responses_stream(client, fake):
    with client.responses.stream(model=MODEL, input="ping responses-stream-9034") as stream:
        events = list(stream)
    types = [e.type for e in events]
    assert "response.created" in types
    assert types[-1] == "response.completed", types[-5:]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert "You said: ping responses-stream-9034" in text


def test_responses_stream_final_response_has_output(client, fake):
    # The SDK's stream helper (and agents built on it) read the answer from response.completed:
    # the gateway must not forward the upstream's empty `output` array there.
    with client.responses.stream(model=MODEL, input="ping responses-final-2210") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert "You said: ping responses-final-2210" in final.output_text


def test_responses_create_stream_true(client, fake):
    stream = client.responses.create(model=MODEL, input="ping responses-raw-3310", stream=True)
    types = [e.type for e in stream]
    assert types[0] == "response.created"
    assert "response.output_text.delta" in types
    assert types[-1] == "response.completed"


# --- Models -------------------------------------------------------------------------------------------


def test_models_list_contains_gpt_5_4(client):
    ids = [m.id for m in client.models.list()]
    assert MODEL in ids, ids


# --- Errors -------------------------------------------------------------------------------------------


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(
            model="no-such-model-xyz", messages=[{"role": "user", "content": "hi"}]
        )


def test_wrong_api_key_is_authentication_error(gateway, fake):
    bad = make_client(gateway.v1, api_key="wrong-key")
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert fake.response_bodies() == [], "a request with a wrong key must not reach the upstream"


def test_usage_limit_is_rate_limit_with_retry_after(fresh_stack):
    # Own stack: the only account goes into cooldown.
    client = make_client(fresh_stack.gateway.v1)
    fresh_stack.fake.enqueue({"kind": "usage_limit", "resets_in_secs": 120})
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    retry_after = info.value.response.headers.get("retry-after")
    assert retry_after is not None, dict(info.value.response.headers)
    assert 0 < int(retry_after) <= 121, retry_after


def test_context_length_exceeded_is_bad_request(client, fake):
    fake.enqueue({"kind": "context_length_exceeded"})
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "long"}])
    assert info.value.code == "context_length_exceeded", info.value.body
