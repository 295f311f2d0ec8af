"""The real Codex CLI (`codex exec`, npm @openai/codex) using the gateway as a Responses provider.

Config as in shared/spec/real-clients.md: model_provider "gw" with wire_api "responses", env_key GW_KEY,
analytics and plugins off, a temporary CODEX_HOME and HOME, stdin closed.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

import harness

TIMEOUT = 120


def write_config(codex_home: Path, gateway_v1: str, websockets: bool = False, extra: str = "") -> None:
    codex_home.mkdir(parents=True, exist_ok=True)
    # `supports_websockets = true`: Codex talks to the provider over the Responses WebSocket (issue 25).
    ws = "supports_websockets = true\n" if websockets else ""
    (codex_home / "config.toml").write_text(
        f"""model = "gpt-5.4"
model_provider = "gw"
{extra}
[model_providers.gw]
name = "gateway"
base_url = "{gateway_v1}"
wire_api = "responses"
env_key = "GW_KEY"
request_max_retries = 1
stream_max_retries = 1
{ws}
[analytics]
enabled = false

[features]
plugins = false
""",
        "utf-8",
    )


def run_codex(
    tmp_path: Path, gateway, prompt: str, json_events: bool = False, websockets: bool = False, extra: str = ""
) -> subprocess.CompletedProcess:
    codex = harness.node_bin("codex")
    home = tmp_path / "home"
    codex_home = tmp_path / "codex-home"
    work = tmp_path / "work"
    for d in (home, work):
        d.mkdir(parents=True, exist_ok=True)
    write_config(codex_home, gateway.v1, websockets, extra)
    env = harness.child_env(
        {
            "HOME": str(home),
            "CODEX_HOME": str(codex_home),
            "GW_KEY": gateway.api_key,
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "NO_COLOR": "1",
        }
    )
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_API_KEY", "RUST_LOG"):
        env.pop(name, None)
    try:
        return subprocess.run(
            [str(codex), "exec", *(["--json"] if json_events else []), "--skip-git-repo-check", prompt],
            cwd=str(work),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"codex exec did not finish within {TIMEOUT}s\nstdout:\n{(e.stdout or b'').decode(errors='replace')}"
            f"\nstderr:\n{(e.stderr or b'').decode(errors='replace')}"
        )


def show(proc: subprocess.CompletedProcess) -> str:
    return (
        f"exit {proc.returncode}\n--- stdout:\n{proc.stdout.decode(errors='replace')}"
        f"\n--- stderr:\n{proc.stderr.decode(errors='replace')[-6000:]}"
    )


def test_codex_exec_plain_answer(tmp_path, gateway, fake):
    proc = run_codex(tmp_path, gateway, "say codex-plain-5150")
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, show(proc)
    assert "You said: say codex-plain-5150" in out, show(proc)
    reqs = [r for r in fake.requests("responses") if r["method"] == "POST"]
    assert len(reqs) == 1, [r["path"] for r in reqs]
    body = reqs[0]["body"]
    assert body["model"] == "gpt-5.4"
    assert body["stream"] is True and body["store"] is False
    # As the official client sends it: no top-level instructions, its base instructions a developer message.
    assert "instructions" not in body
    assert body["input"][0]["role"] == "developer"


def _exec_tool(tools: list[dict]) -> tuple[str, dict]:
    """The scripted call for the shell tool Codex offers: exec_command{cmd} or shell{command:[...]}."""
    names = {t.get("name") for t in tools if t.get("type") == "function"}
    if "exec_command" in names:
        return "exec_command", {"cmd": "echo codex-tool-ok-123"}
    if "shell" in names:
        return "shell", {"command": ["bash", "-lc", "echo codex-tool-ok-123"]}
    if "shell_command" in names:
        return "shell_command", {"command": "echo codex-tool-ok-123"}
    pytest.fail(f"Codex offered no shell tool; function tools: {sorted(n for n in names if n)}")


def test_codex_exec_tool_round_trip(tmp_path, gateway, fake):
    # Learn the shell tool's name and argument shape from what this Codex version sends.
    probe = run_codex(tmp_path / "probe", gateway, "say codex-probe")
    assert probe.returncode == 0, show(probe)
    first = [r for r in fake.requests("responses") if r["method"] == "POST"][0]["body"]
    name, args = _exec_tool(first.get("tools") or [])
    fake.reset_requests()

    directive = json.dumps({"kind": "tool_call", "name": name, "arguments": args})
    proc = run_codex(tmp_path / "run", gateway, f"run the command <<fake {directive}>>")
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, show(proc)

    bodies = [harness.answered(r) for r in fake.requests("responses") if r["method"] == "POST"]
    assert len(bodies) >= 2, f"expected a follow-up request after the tool call, got {len(bodies)}\n{show(proc)}"
    later = bodies[1:]
    outputs = [
        i for b in later for i in b.get("input", []) if i.get("type") == "function_call_output"
    ]
    assert any("codex-tool-ok-123" in json.dumps(o.get("output")) for o in outputs), (
        f"no function_call_output containing the command's output: {json.dumps(outputs)[:2000]}\n{show(proc)}"
    )
    calls = [i for i in later[0].get("input", []) if i.get("type") == "function_call"]
    assert {c["call_id"] for c in calls} >= {o["call_id"] for o in outputs}
    assert "Tool result:" in out, show(proc)


def _rollout_rate_limits(codex_home: Path) -> list[dict]:
    """The rate limits Codex recorded in its session rollout (`token_count` events), as it read them."""
    found = []
    for f in sorted(codex_home.rglob("rollout-*.jsonl")):
        for line in f.read_text("utf-8").splitlines():
            payload = json.loads(line).get("payload") or {}
            if payload.get("type") == "token_count" and payload.get("rate_limits"):
                found.append(payload["rate_limits"])
    return found


@pytest.mark.parametrize("websockets", [False, True], ids=["sse", "websocket"])
def test_codex_exec_json_shows_the_serving_accounts_rate_limits(tmp_path, gateway, fake, websockets):
    # issue 25: the gateway passes the serving account's x-codex-* headers on (over the WebSocket: a
    # codex.rate_limits frame before the turn's events), so Codex shows real numbers.
    account_id = fake.accounts[0][0]
    resets_at = int(time.time()) + 4321
    fake._call(
        "POST",
        f"/_fake/accounts/{account_id}/quota",
        {"primary_used_percent": 42.5, "secondary_used_percent": 7.0, "resets_at": resets_at},
    )
    try:
        proc = run_codex(tmp_path, gateway, "say codex-limits", json_events=True, websockets=websockets)
        assert proc.returncode == 0, show(proc)
        events = [json.loads(l) for l in proc.stdout.decode().splitlines() if l.startswith("{")]
        assert any(e.get("type") == "turn.completed" for e in events), show(proc)
        limits = _rollout_rate_limits(tmp_path / "codex-home")
        assert limits, f"Codex recorded no rate limits\n{show(proc)}"
        last = limits[-1]
        assert last["primary"]["used_percent"] == 42.5, last
        assert last["primary"]["resets_at"] == resets_at, last
        assert last["primary"]["window_minutes"] == 300, last
        assert last["secondary"]["used_percent"] == 7.0, last
    finally:
        fake._call(
            "POST",
            f"/_fake/accounts/{account_id}/quota",
            {"primary_used_percent": 0.0, "secondary_used_percent": 0.0},
        )


# --- issue 25: the Responses WebSocket (`supports_websockets = true` on the provider) --------------------------

WS_ROUTE = "/v1/responses (websocket)"


def _served_over_websocket(gateway, since: int) -> tuple[list[str], list[str]]:
    """(turns served over the socket, Responses POSTs) in the gateway's access log since offset `since`."""
    lines = [l for l in gateway.settled_log_text()[since:].splitlines() if " request request_id=" in l]
    responses = [l for l in lines if 'api="responses"' in l]
    ws = [l for l in responses if f"route={WS_ROUTE} status=" in l]
    posts = [l for l in responses if "route=/v1/responses status=" in l]
    return ws, posts


def test_codex_exec_plain_answer_over_websocket(tmp_path, gateway, fake):
    since = len(gateway.log_text())
    proc = run_codex(tmp_path, gateway, "say codex-ws-plain-77", websockets=True)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, show(proc)
    assert "You said: say codex-ws-plain-77" in out, show(proc)
    ws, posts = _served_over_websocket(gateway, since)
    # Served over the socket, not by a fallback to HTTP.
    assert ws, f"no turn served over the WebSocket:\n{gateway.log_text()[since:][-4000:]}"
    assert not posts, f"fell back to HTTP POSTs: {posts}"
    # The CLI's warm-up (`generate: false`) is passed on over the upstream WebSocket as the official client sends it
    # (issue 72, docs/protocol.md), then the one turn, which chains on it.
    bodies = [r["body"] for r in fake.requests("responses") if r["method"] == "POST"]
    assert [b.get("generate") for b in bodies] == [False, None], [b.get("input") for b in bodies]
    turn = bodies[1]
    assert turn["stream"] is True and "type" not in turn and "generate" not in turn


def test_codex_exec_tool_round_trip_over_websocket(tmp_path, gateway, fake):
    probe = run_codex(tmp_path / "probe", gateway, "say codex-ws-probe", websockets=True)
    assert probe.returncode == 0, show(probe)
    first = [r for r in fake.requests("responses") if r["method"] == "POST"][0]["body"]
    name, args = _exec_tool(first.get("tools") or [])
    fake.reset_requests()

    since = len(gateway.log_text())
    directive = json.dumps({"kind": "tool_call", "name": name, "arguments": args})
    proc = run_codex(tmp_path / "run", gateway, f"run the command <<fake {directive}>>", websockets=True)
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, show(proc)
    assert "Tool result:" in out, show(proc)
    ws, posts = _served_over_websocket(gateway, since)
    assert len(ws) >= 2 and not posts, f"ws turns {len(ws)}, posts {posts}\n{gateway.log_text()[since:][-4000:]}"

    # The second turn went out with only the new items and previous_response_id, and went upstream the same way on
    # the conversation's upstream WebSocket (docs/protocol.md, "Long sessions"): the call's output alone, chained.
    # What the backend answered is the whole conversation: the user's prompt, the call, and its output, in order.
    # The CLI's warm-up went on first (`generate: false`, issue 72); the turns are the rest.
    records = [
        r for r in fake.requests("responses") if r["method"] == "POST" and r["body"].get("generate") is not False
    ]
    assert len(records) >= 2, show(proc)
    sent = records[1]["body"]
    assert sent.get("previous_response_id"), sent
    assert [i.get("type") for i in sent.get("input", [])] == ["function_call_output"], sent.get("input")
    items = harness.answered(records[1]).get("input", [])
    users = [i for i in items if i.get("role") == "user"]
    assert any("run the command" in json.dumps(u) for u in users), json.dumps(items)[:3000]
    calls = [i for i in items if i.get("type") == "function_call"]
    outputs = [i for i in items if i.get("type") == "function_call_output"]
    assert calls and outputs, json.dumps(items)[:3000]
    assert {c["call_id"] for c in calls} >= {o["call_id"] for o in outputs}
    assert any("codex-tool-ok-123" in json.dumps(o.get("output")) for o in outputs), json.dumps(outputs)[:2000]


# --- issue 25: remote compaction by the real CLI (compaction v2 over its built-in provider) ----------------------


def _run_builtin_provider(tmp_path: Path, gateway, prompts: list[str]) -> list[subprocess.CompletedProcess]:
    """Codex with its built-in OpenAI provider pointed at the gateway (`openai_base_url`, logged in with the
    gateway's key), a low `model_auto_compact_token_limit` so it compacts before its second turn, and `prompts`
    as one turn each of the same session (`exec`, then `exec resume --last`)."""
    codex = harness.node_bin("codex")
    home, codex_home, work = tmp_path / "home", tmp_path / "codex-home", tmp_path / "work"
    for d in (home, codex_home, work):
        d.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        f"""model = "gpt-5.4"
openai_base_url = "{gateway.v1}"
model_auto_compact_token_limit = 5000

[analytics]
enabled = false

[features]
plugins = false
""",
        "utf-8",
    )
    env = harness.child_env(
        {
            "HOME": str(home),
            "CODEX_HOME": str(codex_home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "NO_COLOR": "1",
        }
    )
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_API_KEY", "RUST_LOG"):
        env.pop(name, None)
    login = subprocess.run(
        [str(codex), "login", "--with-api-key"], input=gateway.api_key.encode(), env=env, cwd=str(work),
        capture_output=True, timeout=TIMEOUT,
    )
    assert login.returncode == 0, show(login)
    runs = []
    for i, prompt in enumerate(prompts):
        args = [str(codex), "exec", "--skip-git-repo-check", *(["resume", "--last"] if i else []), prompt]
        try:
            runs.append(
                subprocess.run(args, cwd=str(work), env=env, stdin=subprocess.DEVNULL, capture_output=True,
                               timeout=TIMEOUT)
            )
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"codex exec did not finish within {TIMEOUT}s\n{(e.stderr or b'').decode(errors='replace')}")
    return runs


def test_codex_cli_compacts_through_the_gateway_and_continues(tmp_path, gateway, fake):
    # Codex 0.169 compacts with "compaction v2": an ordinary /responses request whose input ends with
    # {"type":"compaction_trigger"}, answered with exactly one `compaction` item that later requests carry back.
    # Its built-in provider also sends `internal_chat_message_metadata_passthrough` on its items (fake-codex
    # accepts it where the client puts it) and talks over the Responses WebSocket.
    since = len(gateway.log_text())
    first, second = _run_builtin_provider(tmp_path, gateway, ["say codex-compact-1", "say codex-compact-2"])
    assert first.returncode == 0, show(first)
    assert "You said: say codex-compact-1" in first.stdout.decode(errors="replace"), show(first)
    assert second.returncode == 0, show(second)
    assert "You said: say codex-compact-2" in second.stdout.decode(errors="replace"), show(second)

    posts = [r for r in fake.requests("responses") if r["method"] == "POST"]
    triggers = [i for i, r in enumerate(posts) if (r["body"].get("input") or [{}])[-1].get("type") == "compaction_trigger"]
    assert len(triggers) == 1, [[it.get("type") for it in r["body"].get("input", [])] for r in posts]
    compact = posts[triggers[0]]
    assert compact.get("status") == 200, compact.get("status")
    # The next turn carries the compaction item back, untouched: fake-codex opens its seal (any change, or another
    # account, is refused), and the turn succeeded.
    after = posts[triggers[0] + 1]
    assert after.get("status") == 200, after.get("status")
    items = [it for it in after["body"]["input"] if it.get("type") == "compaction"]
    assert len(items) == 1 and items[0].get("encrypted_content"), json.dumps(after["body"]["input"])[:2000]
    assert set(items[0]) <= {"type", "encrypted_content", "id"}, items[0]
    assert any("internal_chat_message_metadata_passthrough" in it for it in after["body"]["input"])
    ws, _ = _served_over_websocket(gateway, since)
    assert len(ws) >= 3, gateway.log_text()[since:][-3000:]
