"""Client keys with limits, as the official SDKs see them (docs/operations.md, "Client keys").

Keys are created through /admin/keys with the admin key; each case then drives an SDK with the created key and
checks the exception class it raises and the status it carries, for: a revoked key, a model outside the key's
allow-list, the request rate exceeded, the daily token budget spent. The SDKs are built with retries off: an
SDK that retried a 429 after `Retry-After` would wait the minute out instead of raising.
"""

from __future__ import annotations

import itertools

import anthropic
import httpx
import ollama
import openai
import pytest
from google import genai
from google.genai import errors, types

import harness

ADMIN_KEY = "admin-test-key"
OPENAI_MODEL = "gpt-5.4"
ANTHROPIC_MODEL = "claude-sonnet-4-6"  # resolves to gpt-5.4 (the sonnet family)
GEMINI_MODEL = "gemini-2.5-flash"  # resolves to gpt-5.4


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """A gateway with a separate admin key (and the Ollama bridge), private to this module."""
    s = harness.Stack.start(
        tmp_path_factory.mktemp("keys"), gateway_env={"CODEX_GATEWAY_ADMIN_KEY": ADMIN_KEY}, ollama=True
    )
    yield s
    s.stop()


def admin(gw: harness.Gateway, method: str, path: str, body=None, key: str = ADMIN_KEY) -> harness.HttpResult:
    return harness.http(method, gw.url + path, body, headers={"Authorization": f"Bearer {key}"})


KEY_NUMBERS = itertools.count(1)


def create_key(gw: harness.Gateway, **spec) -> str:
    """A new key's secret (the only time the gateway shows it). Each key gets a name of its own: two keys that
    are not revoked may not share one."""
    r = admin(gw, "POST", "/admin/keys", {"name": f"sdk-test-{next(KEY_NUMBERS)}", **spec})
    assert r.status == 201, r.text
    return r.json()["secret"]


def revoked_key(gw: harness.Gateway) -> str:
    r = admin(gw, "POST", "/admin/keys", {"name": "sdk-revoked"})
    assert r.status == 201, r.text
    key = r.json()
    assert admin(gw, "POST", f"/admin/keys/{key['id']}/revoke").status == 200
    return key["secret"]


# --- one call per SDK ---------------------------------------------------------------------------------


def call_openai(gw, key: str, model: str = OPENAI_MODEL):
    client = openai.OpenAI(
        base_url=gw.v1, api_key=key, max_retries=0, timeout=60, http_client=httpx.Client(trust_env=False, timeout=60)
    )
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello"}])


def call_openai_responses(gw, key: str, model: str = OPENAI_MODEL):
    client = openai.OpenAI(
        base_url=gw.v1, api_key=key, max_retries=0, timeout=60, http_client=httpx.Client(trust_env=False, timeout=60)
    )
    return client.responses.create(model=model, input="hello")


def call_anthropic(gw, key: str, model: str = ANTHROPIC_MODEL):
    client = anthropic.Anthropic(
        base_url=gw.url,
        api_key=key,
        max_retries=0,
        timeout=60,
        http_client=anthropic.DefaultHttpxClient(trust_env=False),
    )
    return client.messages.create(model=model, max_tokens=256, messages=[{"role": "user", "content": "hello"}])


def call_genai(gw, key: str, model: str = GEMINI_MODEL):
    client = genai.Client(
        api_key=key, http_options=types.HttpOptions(base_url=gw.url, api_version="v1beta", timeout=60_000)
    )
    return client.models.generate_content(model=model, contents="hello")


def call_ollama(gw, key: str, model: str = OPENAI_MODEL):
    # The bridge asks for no key, but honours a created one sent as a bearer token.
    client = ollama.Client(host=gw.ollama, trust_env=False, timeout=60, headers={"Authorization": f"Bearer {key}"})
    return client.chat(model=model, messages=[{"role": "user", "content": "hello"}])


# (call, {case: exception class}), the status read from the exception by `status_of`.
SDKS = {
    "openai-chat": (
        call_openai,
        {401: openai.AuthenticationError, 403: openai.PermissionDeniedError, 429: openai.RateLimitError},
    ),
    "openai-responses": (
        call_openai_responses,
        {401: openai.AuthenticationError, 403: openai.PermissionDeniedError, 429: openai.RateLimitError},
    ),
    "anthropic": (
        call_anthropic,
        {401: anthropic.AuthenticationError, 403: anthropic.PermissionDeniedError, 429: anthropic.RateLimitError},
    ),
    "google-genai": (call_genai, {401: errors.ClientError, 403: errors.ClientError, 429: errors.ClientError}),
    "ollama": (call_ollama, {401: ollama.ResponseError, 403: ollama.ResponseError, 429: ollama.ResponseError}),
}


def status_of(exc: BaseException) -> int:
    for attr in ("status_code", "code"):  # openai/anthropic/ollama: status_code; google-genai: code
        v = getattr(exc, attr, None)
        if isinstance(v, int):
            return v
    raise AssertionError(f"no status on {exc!r}")


def message_of(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or getattr(exc, "error", None) or exc)


def retry_after(exc: BaseException) -> str | None:
    resp = getattr(exc, "response", None)
    headers = getattr(resp, "headers", None)
    return headers.get("retry-after") if headers is not None else None


@pytest.mark.parametrize("sdk", list(SDKS))
def test_revoked_key(keyed, sdk):
    call, classes = SDKS[sdk]
    key = revoked_key(keyed.gateway)
    with pytest.raises(classes[401]) as e:
        call(keyed.gateway, key)
    assert status_of(e.value) == 401
    assert "revoked" in message_of(e.value)


@pytest.mark.parametrize("sdk", list(SDKS))
def test_model_not_allowed(keyed, sdk):
    call, classes = SDKS[sdk]
    key = create_key(keyed.gateway, models=["gpt-5.2"])
    with pytest.raises(classes[403]) as e:
        call(keyed.gateway, key)
    assert status_of(e.value) == 403
    assert "may not use the model" in message_of(e.value)
    if sdk.startswith("openai"):
        assert e.value.code == "model_not_allowed"
    if sdk == "google-genai":
        assert e.value.status == "PERMISSION_DENIED"


@pytest.mark.parametrize("sdk", list(SDKS))
def test_rate_limit(keyed, sdk):
    call, classes = SDKS[sdk]
    key = create_key(keyed.gateway, rpm=1)
    call(keyed.gateway, key)
    with pytest.raises(classes[429]) as e:
        call(keyed.gateway, key)
    assert status_of(e.value) == 429
    assert "1 requests per minute" in message_of(e.value)
    if sdk.startswith("openai"):
        assert e.value.code == "key_rate_limit_exceeded"
    if sdk in ("openai-chat", "openai-responses", "anthropic"):
        assert 1 <= int(retry_after(e.value)) <= 60
    if sdk == "google-genai":
        assert e.value.status == "RESOURCE_EXHAUSTED"


@pytest.mark.parametrize("sdk", list(SDKS))
def test_token_budget(keyed, sdk):
    call, classes = SDKS[sdk]
    # The first request runs whole (a request may overshoot by its own size); the next is refused.
    key = create_key(keyed.gateway, daily_tokens=1)
    call(keyed.gateway, key)
    with pytest.raises(classes[429]) as e:
        call(keyed.gateway, key)
    assert status_of(e.value) == 429
    msg = message_of(e.value)
    assert "daily token budget" in msg and "resets at" in msg and "T00:00:00Z" in msg
    if sdk.startswith("openai"):
        assert e.value.code == "daily_token_budget_exceeded"


def test_created_keys_cannot_manage_keys(keyed):
    gw = keyed.gateway
    key = create_key(gw)
    for k in (key, harness.API_KEY):
        r = admin(gw, "GET", "/admin/keys", key=k)
        assert r.status == 403, r.text
        assert r.json()["error"]["code"] == "admin_key_required"
    listed = admin(gw, "GET", "/admin/keys")
    assert listed.status == 200
    assert key not in listed.text
