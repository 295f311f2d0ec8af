"""Python's `websockets` client on the gateway's Responses WebSocket: a close it starts ends as a normal 1000 close.

RFC 6455 5.5.1: an endpoint that receives a Close frame answers with a Close frame. The gateway used to drop the
connection at once, and clients (node's and this one) then reported 1006 (closed abnormally) after their own
normal 1000. Here the client sees the server's Close frame echo its code, both when idle and mid-turn.
"""

from __future__ import annotations

import asyncio
import json

import websockets
from websockets.asyncio.client import connect

import harness

MODEL = "gpt-5.4"


def ws_url(gateway) -> str:
    return gateway.v1.replace("http://", "ws://", 1) + "/responses"


def create(text: str) -> str:
    return json.dumps({"type": "response.create", "model": MODEL, "instructions": "", "stream": True,
                       "store": False, "input": [{"role": "user", "content": text}]})


async def until(ws, kind: str) -> dict:
    """Read frames up to the first event of type `kind`."""
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if event.get("type") == kind:
            return event
        assert event.get("type") not in ("error", "response.failed"), event


async def close_codes(gateway, mid_turn: bool, code: int) -> tuple[int | None, int | None]:
    headers = {"Authorization": f"Bearer {harness.API_KEY}"}
    async with connect(ws_url(gateway), additional_headers=headers, proxy=None) as ws:
        if mid_turn:
            await ws.send(create("slowly"))
            await until(ws, "response.output_text.delta")
        else:
            await ws.send(create("hello"))
            await until(ws, "response.completed")
        await ws.close(code=code)
        # What the closing handshake ended with: the code the server sent back (None: it sent no Close frame).
        return (ws.close_code, ws.protocol.close_rcvd.code if ws.protocol.close_rcvd else None)


def test_a_close_the_client_starts_is_a_normal_close_idle(gateway):
    local, received = asyncio.run(close_codes(gateway, mid_turn=False, code=1000))
    assert received == 1000, "the server sent no Close frame back"
    assert local == 1000


def test_a_close_the_client_starts_mid_turn_is_echoed(gateway, fake):
    fake.enqueue({"kind": "slow", "text": "tick " * 60, "deltas": 60, "delay_ms": 50})
    local, received = asyncio.run(close_codes(gateway, mid_turn=True, code=1001))
    assert received == 1001
    assert local == 1001


def test_the_close_is_not_abnormal(gateway):
    """The exception a client raises after the close: `ConnectionClosedOK` (1000), not `ConnectionClosedError`."""

    async def run():
        headers = {"Authorization": f"Bearer {harness.API_KEY}"}
        ws = await connect(ws_url(gateway), additional_headers=headers, proxy=None)
        await ws.close()
        try:
            await ws.recv()
        except websockets.ConnectionClosedOK as e:
            return e.rcvd.code if e.rcvd else None
        except websockets.ConnectionClosedError as e:  # pragma: no cover - the regression
            raise AssertionError(f"closed abnormally: {e}") from e
        raise AssertionError("recv after close returned a frame")

    assert asyncio.run(run()) == 1000
