"""The real Gemini CLI (`gemini -p`, npm @google/gemini-cli) using the gateway as its Gemini API.

Setup as in shared/spec/real-clients.md: GOOGLE_GEMINI_BASE_URL selects the gateway, GEMINI_API_KEY carries the
gateway's key (sent as x-goog-api-key), a temporary HOME with settings.json choosing API-key auth with usage
statistics and telemetry off, and a trusted workspace. The CLI first calls a routing classifier
(generateContent with responseJsonSchema), then streams the turn with streamGenerateContent?alt=sse.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import harness

TIMEOUT = 120

SETTINGS = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
}


def run_gemini(
    tmp_path: Path, gateway, prompt: str, work: Path | None = None, model: str | None = None
) -> subprocess.CompletedProcess:
    gemini = harness.node_bin("gemini")
    home = tmp_path / "home"
    (home / ".gemini").mkdir(parents=True, exist_ok=True)
    (home / ".gemini" / "settings.json").write_text(json.dumps(SETTINGS), "utf-8")
    work = work or tmp_path / "work"
    work.mkdir(parents=True, exist_ok=True)
    env = harness.child_env(
        {
            "HOME": str(home),
            "GEMINI_API_KEY": gateway.api_key,
            "GOOGLE_GEMINI_BASE_URL": gateway.url,
            "GEMINI_CLI_TRUST_WORKSPACE": "true",
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "NO_COLOR": "1",
            "CI": "1",
        }
    )
    for name in ("GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_CLOUD_PROJECT", "GEMINI_MODEL"):
        env.pop(name, None)
    try:
        return subprocess.run(
            [str(gemini), "-p", prompt] + (["-m", model] if model else []),
            cwd=str(work),
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"gemini -p did not finish within {TIMEOUT}s\nstdout:\n{(e.stdout or b'').decode(errors='replace')}"
            f"\nstderr:\n{(e.stderr or b'').decode(errors='replace')[-6000:]}"
        )


def show(proc: subprocess.CompletedProcess) -> str:
    return (
        f"exit {proc.returncode}\n--- stdout:\n{proc.stdout.decode(errors='replace')}"
        f"\n--- stderr:\n{proc.stderr.decode(errors='replace')[-6000:]}"
    )


def posts(fake) -> list[dict]:
    return [harness.answered(r) for r in fake.requests("responses") if r["method"] == "POST"]


def test_gemini_cli_plain_answer(tmp_path, gateway, fake):
    proc = run_gemini(tmp_path, gateway, "say gem-plain-5150")
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, show(proc)
    # The fake echoes the start of the last user message, which Gemini CLI opens with its session context.
    assert "Hello from fake-codex. You said:" in out, show(proc)
    assert "Invalid JSON response" not in proc.stderr.decode(errors="replace"), show(proc)
    bodies = posts(fake)
    assert bodies, "no upstream request"
    assert any("say gem-plain-5150" in json.dumps(b["input"]) for b in bodies if b.get("tools")), show(proc)
    # The routing classifier got a JSON schema; the main turn streamed with the CLI's tools.
    classifier = [b for b in bodies if (b.get("text") or {}).get("format", {}).get("type") == "json_schema"]
    assert classifier, [b.get("text") for b in bodies]
    main = [b for b in bodies if b.get("tools")]
    assert main, "the main turn carries the CLI's tools"
    for b in bodies:
        assert b["stream"] is True and b["store"] is False
        assert "temperature" not in b and "top_p" not in b


def read_file_args(tools: list[dict], target: Path) -> dict:
    """Arguments for the CLI's read_file tool, using the path parameter its schema declares."""
    tool = next(t for t in tools if t.get("name") == "read_file")
    props = (tool.get("parameters") or {}).get("properties") or {}
    key = next((k for k in ("file_path", "absolute_path", "path") if k in props), None)
    assert key, f"read_file declares no path parameter: {json.dumps(tool)[:1000]}"
    return {key: str(target)}


def test_gemini_cli_tool_round_trip(tmp_path, gateway, fake):
    # Learn which tools this CLI version declares, and read_file's argument names.
    probe = run_gemini(tmp_path / "probe", gateway, "say gem-probe")
    assert probe.returncode == 0, show(probe)
    tools = [t for b in posts(fake) for t in b.get("tools") or []]
    assert any(t.get("name") == "read_file" for t in tools), sorted({t.get("name") for t in tools})
    fake.reset_requests()

    # read_file needs no confirmation, so `gemini -p` runs it without --yolo.
    work = tmp_path / "run" / "work"
    work.mkdir(parents=True)
    target = work / "note.txt"
    target.write_text("gem-ok-42\n", "utf-8")
    directive = json.dumps({"kind": "tool_call", "name": "read_file", "arguments": read_file_args(tools, target)})
    # An explicit model skips the routing classifier, which would otherwise be handed the directive too.
    proc = run_gemini(tmp_path / "run", gateway, f"read the note <<fake {directive}>>", work=work, model="gemini-2.5-flash")
    out = proc.stdout.decode(errors="replace")
    assert proc.returncode == 0, show(proc)

    bodies = posts(fake)
    with_output = [b for b in bodies if any(i.get("type") == "function_call_output" for i in b.get("input", []))]
    assert with_output, f"no request carried the tool's result\n{show(proc)}"
    items = with_output[0]["input"]
    outputs = [i for i in items if i.get("type") == "function_call_output"]
    assert any("gem-ok-42" in json.dumps(o.get("output")) for o in outputs), json.dumps(outputs)[:2000]
    calls = {i["call_id"] for i in items if i.get("type") == "function_call"}
    assert {o["call_id"] for o in outputs} <= calls, json.dumps(items)[:2000]
    # The CLI echoed the thoughtSignature on its functionCall part, so the reasoning item went back upstream.
    assert any(i.get("type") == "reasoning" and i.get("encrypted_content") for i in items), json.dumps(items)[:2000]
    assert "Tool result:" in out, show(proc)
