"""Operations data as the official SDKs produce it (docs/operations.md): after a mixed workload (all five
dialects, streaming and not, an upstream error, a failover between two accounts) the usage ledger holds one row
per call with the tokens and status each client saw, and GET /metrics parses with the Prometheus client's own
OpenMetrics parser and its counters equal the ledger's sums."""

from __future__ import annotations

import collections
import time

import anthropic
import httpx
import ollama
import openai
import pytest
from google import genai
from google.genai import types
from prometheus_client.openmetrics.parser import text_string_to_metric_families

import harness

MODEL = "gpt-5.4"


@pytest.fixture
def pool(tmp_path):
    """fake-codex with two accounts in the gateway's store, and the Ollama bridge."""
    work = tmp_path / "ops"
    work.mkdir()
    codex_home = work / "codex-home"
    codex_home.mkdir()
    fake = harness.Fake.start(work, accounts=0)
    gateway = None
    try:
        gateway = harness.Gateway.start(work, fake, codex_home, ollama=True)
        creds = [fake.add_account(plan="plus") for _ in range(2)]
        for c in creds:
            r = admin(gateway, "POST", "/admin/accounts", {"refresh_token": c["refresh_token"]})
            assert r.status == 201, r.text
        yield fake, gateway, creds
    finally:
        if gateway is not None:
            gateway.proc.stop()
        fake.proc.stop()


def admin(gw: harness.Gateway, method: str, path: str, body=None) -> harness.HttpResult:
    return harness.http(method, gw.url + path, body, headers={"Authorization": f"Bearer {harness.API_KEY}"})


class Seen:
    """What one client saw: its status and its tokens in the ledger's convention (input includes cached)."""

    def __init__(self, status: int, input_tokens: int = 0, output_tokens: int = 0):
        self.status, self.input, self.output = status, input_tokens, output_tokens


def workload(gw: harness.Gateway, fake: harness.Fake, creds) -> list[Seen]:
    seen: list[Seen] = []
    http = httpx.Client(trust_env=False, timeout=60)
    oa = openai.OpenAI(base_url=gw.v1, api_key=gw.api_key, max_retries=0, http_client=http)
    an = anthropic.Anthropic(base_url=gw.url, api_key=gw.api_key, max_retries=0,
                             http_client=anthropic.DefaultHttpxClient(trust_env=False))
    ge = genai.Client(api_key=gw.api_key, http_options=types.HttpOptions(base_url=gw.url, api_version="v1beta"))
    ol = ollama.Client(host=gw.ollama, trust_env=False, timeout=60)
    msgs = lambda text: [{"role": "user", "content": text}]  # noqa: E731

    r = oa.chat.completions.create(model=MODEL, messages=msgs("chat whole"))
    seen.append(Seen(200, r.usage.prompt_tokens, r.usage.completion_tokens))
    usage = None
    for chunk in oa.chat.completions.create(model=MODEL, messages=msgs("chat stream"), stream=True,
                                            stream_options={"include_usage": True}):
        usage = chunk.usage or usage
    seen.append(Seen(200, usage.prompt_tokens, usage.completion_tokens))

    r = oa.responses.create(model=MODEL, input="responses whole")
    seen.append(Seen(200, r.usage.input_tokens, r.usage.output_tokens))
    usage = None
    for event in oa.responses.create(model=MODEL, input="responses stream", stream=True):
        if event.type == "response.completed":
            usage = event.response.usage
    seen.append(Seen(200, usage.input_tokens, usage.output_tokens))

    m = an.messages.create(model="claude-sonnet-4-6", max_tokens=256, messages=msgs("anthropic whole"))
    seen.append(Seen(200, m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0), m.usage.output_tokens))
    with an.messages.stream(model="claude-sonnet-4-6", max_tokens=256, messages=msgs("anthropic stream")) as s:
        m = s.get_final_message()
    seen.append(Seen(200, m.usage.input_tokens + (m.usage.cache_read_input_tokens or 0), m.usage.output_tokens))

    def gemini_seen(u) -> Seen:
        return Seen(200, u.prompt_token_count or 0, (u.candidates_token_count or 0) + (u.thoughts_token_count or 0))

    r = ge.models.generate_content(model="gemini-2.5-flash", contents="gemini whole")
    seen.append(gemini_seen(r.usage_metadata))
    last = None
    for chunk in ge.models.generate_content_stream(model="gemini-2.5-flash", contents="gemini stream"):
        last = chunk.usage_metadata or last
    seen.append(gemini_seen(last))

    r = ol.chat(model=MODEL, messages=msgs("ollama whole"))
    seen.append(Seen(200, r.prompt_eval_count, r.eval_count))
    final = None
    for part in ol.chat(model=MODEL, messages=msgs("ollama stream"), stream=True):
        final = part if part.done else final
    seen.append(Seen(200, final.prompt_eval_count, final.eval_count))

    # The upstream refuses a request: the client's 400, no tokens.
    fake.enqueue({"kind": "http_error", "status": 400,
                  "body": {"error": {"message": "Invalid value for 'tools'", "type": "invalid_request_error",
                                     "code": "invalid_value"}}})
    with pytest.raises(openai.BadRequestError):
        oa.chat.completions.create(model=MODEL, messages=msgs("refused"))
    seen.append(Seen(400))

    # One account fails once: the request that lands on it is served by the other (a failover).
    fake.enqueue({"kind": "server_error", "status": 500}, account_id=creds[0]["account_id"])
    for i in range(6):
        r = oa.chat.completions.create(model=MODEL, messages=msgs(f"failover {i}"))
        seen.append(Seen(200, r.usage.prompt_tokens, r.usage.completion_tokens))
        if any(x.get("status") == 500 for x in fake.requests()):
            break
    return seen


def ledger_rows(gw: harness.Gateway, count: int) -> list[dict]:
    deadline = time.time() + 10
    while True:
        r = admin(gw, "GET", "/admin/requests?limit=1000")
        assert r.status == 200, r.text
        rows = r.json()["requests"]
        if len(rows) >= count or time.time() > deadline:
            return rows
        time.sleep(0.1)


def test_ledger_and_metrics_equal_what_the_sdks_saw(pool):
    fake, gw, creds = pool
    fake.reset_requests()
    seen = workload(gw, fake, creds)
    rows = ledger_rows(gw, len(seen))
    assert len(rows) == len(seen), [r["request_id"] for r in rows]

    # The ledger: statuses and tokens as the clients saw them.
    assert collections.Counter(r["status"] for r in rows) == collections.Counter(s.status for s in seen)
    assert sorted((r["input_tokens"], r["output_tokens"]) for r in rows) == sorted((s.input, s.output) for s in seen)
    assert {r["api"] for r in rows} == {"chat", "responses", "anthropic", "gemini", "ollama"}
    assert sum(r["failovers"] for r in rows) == 1, rows
    assert sum(1 for r in rows if r["stream"]) == 5

    # The rollups agree with the rows.
    usage = admin(gw, "GET", "/admin/usage?from=1h&bucket=hour&group_by=dialect")
    assert usage.status == 200, usage.text
    totals = usage.json()["totals"]
    assert totals["requests"] == len(rows)
    assert totals["input_tokens"] == sum(r["input_tokens"] for r in rows)
    assert totals["output_tokens"] == sum(r["output_tokens"] for r in rows)

    # Prometheus: the text parses with the reference parser, and the counters equal the ledger.
    m = admin(gw, "GET", "/metrics")
    assert m.status == 200, m.text
    assert m.headers["content-type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in text_string_to_metric_families(m.text)}
    requests = collections.Counter()
    for sample in families["codex_gateway_requests"].samples:
        if sample.name == "codex_gateway_requests_total":
            requests[int(sample.labels["status"])] += int(sample.value)
    assert requests == collections.Counter(r["status"] for r in rows)
    tokens = {s.labels["kind"]: int(s.value) for s in families["codex_gateway_tokens"].samples
              if s.name == "codex_gateway_tokens_total"}
    assert tokens.get("input", 0) == sum(r["input_tokens"] for r in rows)
    assert tokens.get("output", 0) == sum(r["output_tokens"] for r in rows)
    assert tokens.get("cached", 0) == sum(r["cached_tokens"] for r in rows)
    failovers = [s.value for s in families["codex_gateway_failovers"].samples if s.name.endswith("_total")]
    assert failovers == [1.0]
    dropped = [s.value for s in families["codex_gateway_usage_records_dropped"].samples if s.name.endswith("_total")]
    assert dropped == [0.0]
    up = {s.labels["account"]: s.value for s in families["codex_gateway_account_up"].samples}
    assert len(up) == 2 and all(v == 1.0 for v in up.values()), up
    durations = families["codex_gateway_request_duration_seconds"]
    counts = {s.labels["dialect"]: s.value for s in durations.samples if s.name.endswith("_count")}
    assert sum(counts.values()) == len(rows)
