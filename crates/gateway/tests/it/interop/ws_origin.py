"""A Responses WebSocket origin for the interop suite, served by Python's `websockets` (an implementation of RFC 6455
and RFC 7692 the gateway did not write), with permessage-deflate as `websockets` configures it by default (context
takeover both ways, 12-bit windows asked of both sides: the gateway must compress with the window it was given).

Usage: ws_origin.py PORT RECORD_FILE [plain]. With `plain` the server agrees to no extension (frames go
uncompressed both ways). Every `response.create` message is answered with a Responses event stream,
one event per text frame, compressed by `websockets`; each received message appends one JSON line to RECORD_FILE:
its size as received (`wire`, the compressed payload), its size inflated (`size`), whether it came compressed,
the extension the handshake agreed to, and the message itself.
"""

import asyncio
import json
import sys

from websockets.asyncio.server import serve
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory

from sse_origin import response_events  # beside this file: the same answer, framed per event here

DELTAS = ["Hello", " from", " websockets", "."]
PORT, RECORD = int(sys.argv[1]), sys.argv[2]
PLAIN = sys.argv[3:] == ["plain"]


class Counting(PerMessageDeflate):
    """The extension, noting each data frame's payload as it arrived, before inflating it."""

    wire = []

    def decode(self, frame, *, max_size=None):
        if not frame.opcode.name.startswith(("CLOSE", "PING", "PONG")):
            Counting.wire.append((len(frame.data), frame.rsv1))
        return super().decode(frame, max_size=max_size)


class CountingFactory(ServerPerMessageDeflateFactory):
    def process_request_params(self, params, accepted_extensions):
        response, extension = super().process_request_params(params, accepted_extensions)
        extension.__class__ = Counting
        return response, extension


def events(n):
    return [json.dumps(dict(payload, type=kind), separators=(",", ":"))
            for kind, payload in response_events(f"resp_ws_{n}", f"msg_ws_{n}", DELTAS)]


async def handler(ws):
    agreed = ws.response.headers.get("Sec-WebSocket-Extensions")
    offered = ws.request.headers.get("Sec-WebSocket-Extensions")
    async for message in ws:
        wire = sum(w for w, _ in Counting.wire)
        compressed = bool(Counting.wire) and Counting.wire[0][1]
        Counting.wire.clear()
        text = message if isinstance(message, str) else message.decode()
        with open(RECORD, "a") as f:
            f.write(json.dumps({"wire": wire, "size": len(text.encode()), "compressed": compressed,
                                "offered": offered, "agreed": agreed, "message": json.loads(text)}) + "\n")
        for frame in events(sum(1 for _ in open(RECORD))):
            await ws.send(frame)


async def main():
    factory = CountingFactory(server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5})
    extensions = [] if PLAIN else [factory]
    async with serve(handler, "127.0.0.1", PORT, extensions=extensions, compression=None, max_size=64 << 20):
        print("listening", flush=True)
        await asyncio.Future()


asyncio.run(main())
