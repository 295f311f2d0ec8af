"""The official `google-genai` Python SDK against the gateway's Gemini dialect (v1beta).

The SDK decodes `thoughtSignature` as base64 bytes and re-encodes it when it sends history back, so the
function-calling round trip also proves the signature survives that and the fake accepts the echoed reasoning.
"""

from __future__ import annotations

import json

import pytest
from google import genai
from google.genai import errors, types
from pydantic import BaseModel

import harness

MODEL = "gemini-2.5-flash"

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather for a city",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={"city": types.Schema(type=types.Type.STRING)},
        required=["city"],
    ),
)


@pytest.fixture
def client(gateway) -> genai.Client:
    return genai.Client(
        api_key=gateway.api_key,
        http_options=types.HttpOptions(base_url=gateway.url, api_version="v1beta", timeout=60_000),
    )


def test_generate_content(client, fake):
    resp = client.models.generate_content(model=MODEL, contents="hello genai-plain-4242")
    assert "You said: hello genai-plain-4242" in (resp.text or "")
    assert resp.candidates[0].finish_reason == types.FinishReason.STOP
    assert resp.usage_metadata.prompt_token_count > 0
    assert resp.usage_metadata.total_token_count >= resp.usage_metadata.prompt_token_count
    body = fake.response_bodies()[-1]
    assert body["model"] == "gpt-5.4"
    assert body["store"] is False


def test_generate_content_stream(client, fake):
    fake.enqueue({"kind": "text", "text": "one two three four five", "deltas": 5})
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="count"))
    assert len(chunks) >= 2
    assert "".join(c.text or "" for c in chunks) == "one two three four five"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.total_token_count > 0


def test_function_calling_round_trip(client, fake):
    fake.enqueue({"kind": "tool_call", "name": "get_weather", "arguments": {"city": "Paris"}})
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        thinking_config=types.ThinkingConfig(include_thoughts=True),
    )
    question = types.Content(role="user", parts=[types.Part.from_text(text="Weather in Paris?")])
    first = client.models.generate_content(model=MODEL, contents=[question], config=config)
    calls = first.function_calls or []
    assert len(calls) == 1, first
    call = calls[0]
    assert call.name == "get_weather" and call.args == {"city": "Paris"} and call.id
    model_turn = first.candidates[0].content
    assert any(p.function_call and p.thought_signature for p in model_turn.parts), model_turn

    result = types.Part(
        function_response=types.FunctionResponse(id=call.id, name=call.name, response={"output": "cloudy, 12C"})
    )
    second = client.models.generate_content(
        model=MODEL,
        contents=[question, model_turn, types.Content(role="user", parts=[result])],
        config=config,
    )
    assert "Tool result: cloudy, 12C" in (second.text or "")

    body = fake.response_bodies()[-1]
    items = body["input"]
    reasoning = [i for i in items if i["type"] == "reasoning"]
    assert len(reasoning) == 1 and reasoning[0]["encrypted_content"], json.dumps(items)[:2000]
    fc = [i for i in items if i["type"] == "function_call"]
    fco = [i for i in items if i["type"] == "function_call_output"]
    assert [c["call_id"] for c in fc] == [o["call_id"] for o in fco] == [call.id]
    assert fco[0]["output"] == "cloudy, 12C"


class Person(BaseModel):
    name: str
    age: int


def test_json_schema_output(client, fake):
    resp = client.models.generate_content(
        model=MODEL,
        contents="Give me a person.",
        config=types.GenerateContentConfig(response_mime_type="application/json", response_schema=Person),
    )
    person = resp.parsed
    assert isinstance(person, Person), resp.text
    assert isinstance(person.name, str) and isinstance(person.age, int)
    fmt = fake.response_bodies()[-1]["text"]["format"]
    assert fmt["type"] == "json_schema"
    assert set(fmt["schema"]["properties"]) == {"name", "age"}


def test_count_tokens(client, fake):
    resp = client.models.count_tokens(model=MODEL, contents="The quick brown fox jumps over the lazy dog.")
    assert 5 <= resp.total_tokens <= 20
    assert fake.response_bodies() == [], "counting makes no upstream call"


def test_rate_limit_raises_with_code(tmp_path):
    # A private gateway: the 429 puts its only account in cooldown.
    stack = harness.Stack.start(tmp_path / "stack")
    try:
        stack.fake.enqueue({"kind": "usage_limit", "resets_in_secs": 120})
        c = genai.Client(
            api_key=stack.gateway.api_key,
            http_options=types.HttpOptions(base_url=stack.gateway.url, api_version="v1beta", timeout=60_000),
        )
        with pytest.raises(errors.APIError) as e:
            c.models.generate_content(model=MODEL, contents="x")
        assert e.value.code == 429
        assert e.value.status == "RESOURCE_EXHAUSTED"
    finally:
        stack.stop()


def test_mid_stream_failure_raises(client, fake):
    fake.enqueue(
        {
            "kind": "custom",
            "items": [{"type": "text", "text": "partial answer"}],
            "end": {"type": "failed", "code": "server_is_overloaded", "message": "busy"},
        }
    )
    seen = []
    with pytest.raises(errors.APIError) as e:
        for chunk in client.models.generate_content_stream(model=MODEL, contents="x"):
            seen.append(chunk.text or "")
    assert "".join(seen).startswith("partial"), seen
    assert e.value.code == 503 and e.value.status == "UNAVAILABLE"
