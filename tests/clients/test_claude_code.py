"""Claude Code itself (`claude -p`, npm @anthropic-ai/claude-code) using the gateway as its Anthropic API.

Environment as in shared/spec/real-clients.md: ANTHROPIC_BASE_URL without /v1, ANTHROPIC_AUTH_TOKEN (sent as
Bearer), ANTHROPIC_MODEL=gpt-5.4, telemetry / updates / error reporting / nonessential traffic off, a temporary
HOME, stdin closed, a bounded timeout. Claude Code runs `HEAD /`, then streams `POST /v1/messages?beta=true`.

fake-codex echoes the first text of the last user message unless a `<<fake {...}>>` directive in it scripts
a reply, or a scenario is queued.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

import harness

TIMEOUT = 120

COMPACT_PROMPT_MARK = "CRITICAL: Respond with TEXT ONLY"
CONTINUED_MARK = "This session is being continued from a previous conversation"


class Claude:
    """One Claude Code installation state (HOME) and project directory, so `--continue` finds the session."""

    def __init__(self, root: Path, gateway: harness.Gateway):
        self.home = root / "home"
        self.project = root / "project"
        for d in (self.home, self.project):
            d.mkdir(parents=True, exist_ok=True)
        self.env = harness.child_env(
            {
                "HOME": str(self.home),
                "XDG_CONFIG_HOME": str(self.home / ".config"),
                "XDG_CACHE_HOME": str(self.home / ".cache"),
                "ANTHROPIC_BASE_URL": gateway.url,
                "ANTHROPIC_AUTH_TOKEN": gateway.api_key,
                "ANTHROPIC_MODEL": "gpt-5.4",
                "NO_COLOR": "1",
            }
        )
        for name in ("ANTHROPIC_API_KEY", "CLAUDE_CONFIG_DIR", "ANTHROPIC_DEFAULT_HAIKU_MODEL"):
            self.env.pop(name, None)

    def run(self, prompt: str, *args: str) -> subprocess.CompletedProcess:
        # The prompt goes first: options such as --allowedTools take several values.
        argv = [str(harness.node_bin("claude")), "-p", prompt, *args]
        try:
            return subprocess.run(
                argv,
                cwd=str(self.project),
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired as e:
            pytest.fail(
                f"claude -p did not finish within {TIMEOUT}s\nstdout:\n{(e.stdout or b'').decode(errors='replace')}"
                f"\nstderr:\n{(e.stderr or b'').decode(errors='replace')}"
            )


def show(proc: subprocess.CompletedProcess) -> str:
    return (
        f"exit {proc.returncode}\n--- stdout:\n{proc.stdout.decode(errors='replace')[-6000:]}"
        f"\n--- stderr:\n{proc.stderr.decode(errors='replace')[-6000:]}"
    )


def posts(fake) -> list[dict]:
    return [r for r in fake.requests("responses") if r["method"] == "POST"]


def texts(item: dict) -> list[str]:
    content = item.get("content")
    if isinstance(content, str):
        return [content]
    return [p.get("text", "") for p in content or [] if isinstance(p, dict)]


def last_user_text(body: dict) -> str:
    users = [i for i in body.get("input", []) if i.get("type") == "message" and i.get("role") == "user"]
    return "\n".join(texts(users[-1])) if users else ""


def all_text(body: dict) -> str:
    return "\n".join(t for i in body.get("input", []) if i.get("type") == "message" for t in texts(i))


def test_plain_answer(tmp_path, gateway, fake):
    proc = Claude(tmp_path, gateway).run("say cc-plain-5150")
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, show(proc)
    assert "Hello from fake-codex" in out, show(proc)
    reqs = posts(fake)
    assert len(reqs) == 1, [r["path"] for r in reqs]
    body = reqs[0]["body"]
    assert body["model"] == "gpt-5.4"
    assert "say cc-plain-5150" in all_text(body)
    # System blocks go upstream as the official client sends its instructions: the first developer message.
    assert "instructions" not in body
    first = body["input"][0]
    assert first["role"] == "developer" and first["content"][0]["text"], "system blocks -> the first developer message"
    assert "x-anthropic-billing-header" not in json.dumps(first)
    # Keyed by X-Claude-Code-Session-Id, sent as the official client's thread id: a UUID, in the session header too.
    key = str(body.get("prompt_cache_key", ""))
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", key), key
    assert harness.header(reqs[0], "session-id") == key
    assert body["reasoning"].get("summary") == "auto", "adaptive thinking shows thinking blocks"
    roles = {i.get("role") for i in body["input"] if i.get("type") == "message"}
    assert "system" not in roles, "role:system messages go upstream as developer messages"
    names = {t.get("name") for t in body.get("tools", [])}
    assert {"Bash", "Read"} <= names, sorted(n for n in names if n)


def test_tool_round_trip(tmp_path, gateway, fake):
    scenario = {
        "kind": "tool_call",
        "name": "Bash",
        "arguments": {"command": "echo cc-tool-ok-77", "description": "echo"},
    }
    # As root, --dangerously-skip-permissions is refused; allowing the one tool is enough for -p.
    proc = Claude(tmp_path, gateway).run(f"run it <<fake {json.dumps(scenario)}>>", "--allowedTools", "Bash")
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, show(proc)
    bodies = [harness.answered(r) for r in posts(fake)]
    assert len(bodies) >= 2, f"expected a follow-up request after the tool call\n{show(proc)}"
    bash = next(t for t in bodies[0]["tools"] if t.get("name") == "Bash")
    assert "command" in bash["parameters"]["properties"], "the scripted arguments fit the declared schema"
    items = bodies[1]["input"]
    calls = [i for i in items if i.get("type") == "function_call"]
    outputs = [i for i in items if i.get("type") == "function_call_output"]
    assert [c["name"] for c in calls] == ["Bash"], calls
    assert json.loads(calls[0]["arguments"])["command"] == "echo cc-tool-ok-77"
    assert [o["call_id"] for o in outputs] == [calls[0]["call_id"]]
    assert "cc-tool-ok-77" in json.dumps(outputs[0]["output"]), outputs
    assert "Tool result: cc-tool-ok-77" in out, show(proc)
    assert bodies[0]["prompt_cache_key"] == bodies[1]["prompt_cache_key"]


def test_multi_turn_session_keeps_one_prompt_cache_key(tmp_path, gateway, fake):
    claude = Claude(tmp_path, gateway)
    first = claude.run("first turn cc-multi-1")
    assert first.returncode == 0, show(first)
    second = claude.run("second turn cc-multi-2", "--continue")
    assert second.returncode == 0, show(second)
    assert "You said: second turn cc-multi-2" in second.stdout.decode(errors="replace"), show(second)
    bodies = [harness.answered(r) for r in posts(fake)]
    assert len(bodies) == 2, len(bodies)
    keys = {b["prompt_cache_key"] for b in bodies}
    assert len(keys) == 1, keys
    # The first turn's reasoning came back (inside the thinking block's signature) and the fake accepted it.
    assert any(i.get("type") == "reasoning" and i.get("encrypted_content") for i in bodies[1]["input"])
    assert "first turn cc-multi-1" in all_text(bodies[1])
    reqs = posts(fake)
    assert all(r["status"] == 200 for r in reqs)
    assert reqs[1].get("account_id") == reqs[0].get("account_id")


def test_context_overflow_in_a_single_exchange_is_reported_as_prompt_too_long(tmp_path, gateway, fake):
    fake.enqueue({"kind": "context_length_exceeded"})
    proc = Claude(tmp_path, gateway).run("hello cc-overflow-1", "--output-format", "json")
    result = json.loads(proc.stdout.decode(errors="replace").strip().splitlines()[-1])
    # Claude Code recognised the overflow (not a generic API error). A conversation of one exchange has nothing
    # to compact, so it reports it and stops.
    assert result["terminal_reason"] == "prompt_too_long", result
    assert result["is_error"] is True and result["api_error_status"] == 400
    assert result["result"].startswith("Prompt is too long"), result
    assert len(posts(fake)) == 1


def test_context_overflow_mid_conversation_compacts_and_answers(tmp_path, gateway, fake):
    claude = Claude(tmp_path, gateway)
    for i in (1, 2, 3):
        p = claude.run(f"turn {i} cc-compact", "--continue") if i > 1 else claude.run("turn 1 cc-compact")
        assert p.returncode == 0, show(p)
    fake.reset_requests()
    fake.enqueue({"kind": "context_length_exceeded"})
    proc = claude.run("turn 4 cc-compact", "--continue", "--output-format", "json")
    assert proc.returncode == 0, show(proc)
    result = json.loads(proc.stdout.decode(errors="replace").strip().splitlines()[-1])
    assert result["is_error"] is False and result["terminal_reason"] == "completed", result
    # The fake's answer to the retried turn reached the CLI (it echoes the last user text, which since Claude Code
    # 2.1.33x is a <system-reminder> the CLI appends after a compaction; the turn itself is checked below).
    assert "Hello from fake-codex. You said:" in result["result"], result
    bodies = [harness.answered(r) for r in posts(fake)]
    # 1: the turn that overflowed; then Claude Code's summarisation request (2.1.33x asks a second time, more
    # strictly, when the first answer has no <summary> block, as the fake's echo has not); last: the turn again on
    # the summary.
    assert 3 <= len(bodies) <= 4, [last_user_text(b)[:80] for b in bodies]
    overflowed, summaries, retried = bodies[0], bodies[1:-1], bodies[-1]
    assert "turn 4 cc-compact" in last_user_text(overflowed)
    assert COMPACT_PROMPT_MARK in last_user_text(summaries[0]), last_user_text(summaries[0])[:500]
    assert all("summar" in last_user_text(b) for b in summaries)
    assert CONTINUED_MARK in all_text(retried)
    assert "turn 4 cc-compact" in last_user_text(retried)
    assert len(retried["input"]) < len(overflowed["input"]), "the retried turn carries the compacted history"
    assert len({b["prompt_cache_key"] for b in bodies}) == 1
