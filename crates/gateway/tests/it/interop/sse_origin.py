"""A Responses SSE origin for the interop suite, served by hypercorn (Python's h2) over TLS with HTTP/2.

Answers every POST with a Responses event stream the way the Codex backend sends it: one event per write (one
DATA frame each), 45 extra response headers (HPACK's dynamic table, CONTINUATION frames), the request body read
whole first (bodies larger than the flow-control window; one that is not a JSON object refused with 400, as the
backend would). The first user text of the request steers it: "slow:N" spaces the deltas N ms apart.
"""

import asyncio
import json

import zstandard

DELTAS = ["Hello", " from", " hypercorn", "."]


def user_text(request):
    for item in request.get("input", []):
        for part in item.get("content", []) if isinstance(item.get("content"), list) else []:
            if part.get("type") == "input_text":
                return part.get("text", "")
    return ""


def event(kind, payload):
    payload = dict(payload, type=kind)
    return f"event: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()


def response_events(rid, iid, deltas):
    """A Responses answer with `deltas` as its text, as (event type, payload) pairs in order (the WebSocket origin,
    `ws_origin.py`, sends the same)."""
    response = {"id": rid, "object": "response", "created_at": 1, "status": "in_progress", "model": "gpt-5.4", "output": []}
    out = [("response.created", {"response": response, "sequence_number": 0})]
    item = {"id": iid, "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    out.append(("response.output_item.added", {"output_index": 0, "item": item, "sequence_number": 1}))
    for n, delta in enumerate(deltas):
        out.append(("response.output_text.delta", {
            "item_id": iid, "output_index": 0, "content_index": 0, "delta": delta, "sequence_number": 2 + n}))
    done = dict(item, status="completed", content=[{"type": "output_text", "text": "".join(deltas), "annotations": []}])
    out.append(("response.output_item.done", {"output_index": 0, "item": done, "sequence_number": 2 + len(deltas)}))
    usage = {"input_tokens": 3, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 4,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 7}
    completed = dict(response, status="completed", usage=usage)
    out.append(("response.completed", {"response": completed, "sequence_number": 3 + len(deltas)}))
    return out


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["method"] != "POST":
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"detail":"Not Found"}'})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    encoding = dict(scope["headers"]).get(b"content-encoding", b"")
    try:
        if encoding == b"zstd":
            body = zstandard.ZstdDecompressor().decompressobj().decompress(body)
        request = json.loads(body)
    except (ValueError, zstandard.ZstdError):
        request = None
    if not isinstance(request, dict):
        # As the backend refuses a body it cannot read (a zstd body read without its encoding was one, unnoticed).
        await send({"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b'{"error":{"message":"the body is not a JSON object"}}'})
        return
    text = user_text(request)
    delay = int(text[5:]) / 1000 if text.startswith("slow:") and text[5:].isdigit() else 0
    headers = [(b"content-type", b"text/event-stream"), (b"x-request-id", b"req-interop")]
    headers += [(f"x-extra-{i}".encode(), f"value number {i} of the header block".encode()) for i in range(45)]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    events = [event(kind, payload) for kind, payload in response_events("resp_interop", "msg_interop", DELTAS)]
    for n, chunk in enumerate(events):
        if delay and 2 <= n < 2 + len(DELTAS):
            await asyncio.sleep(delay)
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
