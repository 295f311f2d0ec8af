"""LiteLLM's OpenAI provider (`openai/<model>` with api_base) against the gateway's Chat Completions.

Runs from .venv-litellm (scripts/test: `.venv-litellm/bin/pytest tests/clients/litellm`); the fixtures
come from tests/clients/conftest.py.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # never fetch the cost map

import litellm  # noqa: E402
import pytest  # noqa: E402

import harness  # noqa: E402

litellm.telemetry = False
litellm.num_retries = 0


@pytest.fixture
def gw_kwargs(gateway):
    return {"model": "openai/gpt-5.4", "api_base": gateway.v1, "api_key": harness.API_KEY, "timeout": 60}


def test_litellm_completion_non_stream(gw_kwargs, fake):
    resp = litellm.completion(messages=[{"role": "user", "content": "ping litellm-ns-3141"}], **gw_kwargs)
    msg = resp.choices[0].message
    assert "You said: ping litellm-ns-3141" in (msg.content or "")
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens > 0 and resp.usage.completion_tokens > 0
    bodies = fake.response_bodies()
    assert len(bodies) == 1 and bodies[0]["model"] == "gpt-5.4"


def test_litellm_completion_stream(gw_kwargs, fake):
    stream = litellm.completion(
        messages=[{"role": "user", "content": "ping litellm-stream-2718"}], stream=True, **gw_kwargs
    )
    chunks = list(stream)
    text = "".join((c.choices[0].delta.content or "") for c in chunks if c.choices)
    assert "You said: ping litellm-stream-2718" in text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes and finishes[-1] == "stop", finishes


def test_litellm_tool_call(gw_kwargs, fake):
    fake.enqueue({"kind": "tool_call", "name": "get_weather", "arguments": {"city": "Paris"}})
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    resp = litellm.completion(messages=[{"role": "user", "content": "weather?"}], tools=tools, **gw_kwargs)
    choice = resp.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert '"Paris"' in choice.message.tool_calls[0].function.arguments


def test_litellm_image_generation(gateway, fake):
    """issue 59: LiteLLM's `image_generation` through the gateway's Images API, served by the backend's image
    endpoint on the ChatGPT account."""
    import base64

    resp = litellm.image_generation(
        model="openai/gpt-image-2",
        prompt="a paper boat on a pond",
        size="1024x1024",
        quality="low",
        api_base=gateway.v1,
        api_key=harness.API_KEY,
        timeout=60,
    )
    assert len(resp.data) == 1
    assert base64.b64decode(resp.data[0].b64_json)[:8] == b"\x89PNG\r\n\x1a\n"
    sent = fake.requests("images/generations")
    assert len(sent) == 1
    assert sent[0]["body"]["prompt"] == "a paper boat on a pond"
    assert sent[0]["body"]["model"] == "gpt-image-2"
