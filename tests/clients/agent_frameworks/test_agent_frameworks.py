"""agno's and Semantic Kernel's Responses agents, with their defaults, against the gateway's Responses API.

Both keep responses at the provider by default (`store` on) and send each later request of a tool loop or a
conversation as `previous_response_id` plus only what is new (docs/protocol.md, "Chained responses"). The
backend keeps nothing, so the gateway expands the chain from the responses it holds; when it no longer holds
one it answers OpenAI's `previous_response_not_found`, on which agno sends the whole context again.

Runs from .venv-agents (scripts/test: `.venv-agents/bin/python -m pytest tests/clients/agent_frameworks`); the
fixtures come from tests/clients/conftest.py.
"""

from __future__ import annotations

import asyncio
import json

from agno.agent import Agent
from agno.models.openai import OpenAIResponses
from openai import AsyncOpenAI
from semantic_kernel.agents import OpenAIResponsesAgent
from semantic_kernel.functions import kernel_function

import harness

MODEL = "gpt-5.4"


def input_texts(body: dict) -> str:
    """Everything a request body's input says, as one string to search."""
    return json.dumps(body.get("input", []))


def tool_outputs(body: dict) -> list[dict]:
    return [i for i in body.get("input", []) if i.get("type") == "function_call_output"]


def agno_agent(base_url: str, tools: list) -> Agent:
    return Agent(model=OpenAIResponses(id=MODEL, base_url=base_url, api_key=harness.API_KEY), tools=tools)


def test_agno_tool_loop_chains_through_the_gateway(gateway, fake):
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}, 21C"

    fake.enqueue({"kind": "tool_call", "name": "get_weather", "arguments": {"city": "Paris"}})
    run = agno_agent(gateway.v1, [get_weather]).run("What is the weather in Paris? agno-chain-5521")
    assert "Tool result:" in (run.content or "") and "sunny in Paris, 21C" in run.content, run.content

    bodies = fake.response_bodies()
    assert len(bodies) == 2, bodies
    # The second request named the first response and sent only the tool's output; upstream it arrived whole.
    follow_up = bodies[1]
    assert "agno-chain-5521" in input_texts(follow_up), follow_up
    assert [o["output"] for o in tool_outputs(follow_up)] == ["sunny in Paris, 21C"]
    assert any(i.get("type") == "function_call" and i.get("name") == "get_weather" for i in follow_up["input"])
    assert all(b.get("store") is False and "previous_response_id" not in b for b in bodies)


def test_agno_replays_the_context_when_the_gateway_lost_the_response(fresh_stack):
    """The gateway restarts between the tool call and its follow-up: the chained id is gone, the gateway answers
    `previous_response_not_found`, and agno sends the whole context again, as it does against OpenAI."""
    stack = fresh_stack
    port = int(stack.gateway.url.rsplit(":", 1)[1])

    def get_weather(city: str) -> str:
        """The weather in a city."""
        stack.gateway.proc.stop()
        stack.gateway = harness.Gateway.start(stack.work, stack.fake, stack.codex_home, port=port)
        return f"raining in {city}, 9C"

    stack.fake.enqueue({"kind": "tool_call", "name": "get_weather", "arguments": {"city": "Oslo"}})
    run = agno_agent(stack.gateway.v1, [get_weather]).run("Weather in Oslo? agno-replay-8817")
    assert "raining in Oslo, 9C" in (run.content or ""), run.content

    log = stack.gateway.settled_log_text()
    assert 'status=400 error="invalid_request"' in log, log[-3000:]
    bodies = stack.fake.response_bodies()
    # The refused chained request never went upstream; the replay did, with the whole conversation.
    assert len(bodies) == 2, bodies
    assert "agno-replay-8817" in input_texts(bodies[1])
    assert [o["output"] for o in tool_outputs(bodies[1])] == ["raining in Oslo, 9C"]


class Weather:
    @kernel_function(description="The weather in a city.")
    def get_weather(self, city: str) -> str:
        return f"cloudy in {city}, 14C"


def test_semantic_kernel_responses_agent_chains_tool_calls_and_turns(gateway, fake):
    async def run() -> tuple[str, str]:
        client = AsyncOpenAI(base_url=gateway.v1, api_key=harness.API_KEY)
        agent = OpenAIResponsesAgent(ai_model_id=MODEL, client=client, name="Forecaster",
                                     instructions="Answer with the weather.", plugins=[Weather()])
        first = await agent.get_response(messages="Weather in Lyon? sk-chain-3307")
        second = await agent.get_response(messages="And in Nice? sk-turn-4410", thread=first.thread)
        await client.close()
        return str(first.content), str(second.content)

    fake.enqueue({"kind": "tool_call", "name": "Weather-get_weather", "arguments": {"city": "Lyon"}})
    first, second = asyncio.run(run())
    assert "cloudy in Lyon, 14C" in first, first
    assert "You said:" in second and "sk-turn-4410" in second, second

    bodies = fake.response_bodies()
    assert len(bodies) == 3, bodies
    # The tool's follow-up and the next turn each named the response before them; upstream they arrived whole.
    assert "sk-chain-3307" in input_texts(bodies[1]) and tool_outputs(bodies[1])
    assert "sk-chain-3307" in input_texts(bodies[2]) and "cloudy in Lyon, 14C" in input_texts(bodies[2])
    assert "sk-turn-4410" in input_texts(bodies[2])
    assert all(b.get("store") is False for b in bodies)
