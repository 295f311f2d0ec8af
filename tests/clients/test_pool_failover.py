"""The account pool as clients see it: with 3 accounts, two run out of quota mid-run and neither an OpenAI SDK
client nor an Anthropic SDK client notices; when all three are out, each gets ONE error carrying the soonest
reset as Retry-After."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest

import harness


@pytest.fixture
def pool(tmp_path):
    work = tmp_path / "pool"
    work.mkdir()
    codex_home = work / "codex-home"
    codex_home.mkdir()
    fake = harness.Fake.start(work, accounts=0)
    gateway = None
    try:
        gateway = harness.Gateway.start(work, fake, codex_home)
        creds = [fake.add_account(plan="plus") for _ in range(3)]
        for c in creds:
            r = harness.http(
                "POST",
                gateway.url + "/admin/accounts",
                {"refresh_token": c["refresh_token"]},
                headers={"Authorization": f"Bearer {harness.API_KEY}"},
            )
            assert r.status == 201, r.text
        yield fake, gateway, creds
    finally:
        if gateway is not None:
            gateway.proc.stop()
        fake.proc.stop()


def exhaust(fake: harness.Fake, account_id: str, resets_in: int) -> None:
    fake._call(
        "POST",
        f"/_fake/accounts/{account_id}/quota",
        {"primary_used_percent": 100.0, "secondary_used_percent": 20.0, "resets_at": int(time.time()) + resets_in},
    )


def test_failover_is_invisible_then_one_error_with_the_soonest_reset(pool):
    fake, gateway, creds = pool
    oa = openai.OpenAI(base_url=gateway.v1, api_key=gateway.api_key, max_retries=0,
                       http_client=httpx.Client(trust_env=False))
    an = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.api_key, max_retries=0,
                             http_client=anthropic.DefaultHttpxClient(trust_env=False))
    for i in range(12):
        if i == 4:
            exhaust(fake, creds[0]["account_id"], 600)
            exhaust(fake, creds[1]["account_id"], 300)
        chat = oa.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": f"openai {i}"}])
        assert f"openai {i}" in chat.choices[0].message.content
        with an.messages.stream(model="gpt-5.4", max_tokens=256,
                                messages=[{"role": "user", "content": f"anthropic {i}"}]) as s:
            text = "".join(s.text_stream)
        assert f"anthropic {i}" in text

    served = [r["account_id"] for r in fake.requests("responses") if r.get("status") == 200]
    assert set(served[-8:]) == {creds[2]["account_id"]}, "after the limit, only the account with headroom serves"

    exhaust(fake, creds[2]["account_id"], 900)
    with pytest.raises(openai.RateLimitError) as e:
        oa.chat.completions.create(model="gpt-5.4", messages=[{"role": "user", "content": "none left"}])
    retry = int(e.value.response.headers["retry-after"])
    assert 250 <= retry <= 301, retry
    with pytest.raises(anthropic.RateLimitError) as e2:
        an.messages.create(model="gpt-5.4", max_tokens=64, messages=[{"role": "user", "content": "none left"}])
    assert 250 <= int(e2.value.response.headers["retry-after"]) <= 301
