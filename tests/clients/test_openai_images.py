"""The official `openai` Python SDK's Images API against the gateway (issue 59): `images.generate` and
`images.edit` (multipart, one and several input images), served by fake-codex's image endpoints on the ChatGPT
account, and a parameter the backend lacks refused as the SDK's BadRequestError.
"""

from __future__ import annotations

import base64
import io

import openai
import pytest

import harness

# A 1x1 PNG.
PNG_1X1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway.v1, api_key=harness.API_KEY, max_retries=0, timeout=60)


def _is_png(b64: str) -> bool:
    return base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"


def test_images_generate(client, fake):
    resp = client.images.generate(
        model="gpt-image-2", prompt="a lighthouse at dusk", n=2, size="1024x1536", quality="low"
    )
    assert len(resp.data) == 2 and all(_is_png(d.b64_json) for d in resp.data)
    assert resp.size == "1024x1536" and resp.quality == "low"
    assert resp.usage is not None and resp.usage.output_tokens > 0
    sent = fake.requests("images/generations")
    assert len(sent) == 1
    assert sent[0]["body"] == {
        "prompt": "a lighthouse at dusk",
        "model": "gpt-image-2",
        "n": 2,
        "size": "1024x1536",
        "quality": "low",
    }


def test_images_edit_multipart(client, fake):
    resp = client.images.edit(
        model="gpt-image-2",
        image=[("a.png", io.BytesIO(PNG_1X1), "image/png"), ("b.png", io.BytesIO(PNG_1X1), "image/png")],
        prompt="put both on one table",
    )
    assert _is_png(resp.data[0].b64_json)
    sent = fake.requests("images/edits")
    url = "data:image/png;base64," + base64.b64encode(PNG_1X1).decode()
    assert sent[0]["body"]["images"] == [{"image_url": url}, {"image_url": url}]
    assert sent[0]["body"]["prompt"] == "put both on one table"


def test_images_parameter_the_backend_lacks_is_a_bad_request(client, fake):
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model="gpt-image-2", prompt="x", response_format="url")
    assert e.value.param == "response_format" and "b64_json" in str(e.value)
    assert fake.requests("images/") == []
