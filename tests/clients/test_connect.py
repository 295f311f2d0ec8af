"""`codex-gateway connect CLIENT --write`, then the real client with nothing but the file it wrote.

For Codex CLI, Claude Code and Gemini CLI: a temporary HOME holding the client's own file with settings of the
user's, `connect --write` merges the gateway's settings into it (a backup kept), the real CLI then answers through
the gateway with no gateway variable in its environment (only the key Codex reads from the variable the file
names), a second `--write` changes nothing (same bytes, same times, no new backup), and the user's settings are
still there. The merge itself, for all six clients, is unit-tested in crates/gateway/src/cli/connect.rs.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest

import harness

TIMEOUT = 120

# Variables that would point a client at the gateway by themselves: the file must do it.
CLIENT_VARS = (
    "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY", "ANTHROPIC_MODEL", "CLAUDE_CONFIG_DIR",
    "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GEMINI_MODEL", "GOOGLE_GENAI_USE_VERTEXAI",
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_API_KEY", "CODEX_GATEWAY_API_KEY", "CODEX_GATEWAY_CONFIG",
    "CODEX_GATEWAY_HOST", "RUST_LOG",
)


def env_for(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = harness.child_env(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "NO_COLOR": "1",
        }
    )
    for name in CLIENT_VARS:
        env.pop(name, None)
    env.update(extra or {})
    return env


def connect(home: Path, gateway, client: str, extra: dict[str, str] | None = None) -> str:
    port = gateway.url.rsplit(":", 1)[1]
    env = env_for(home, {"CODEX_GATEWAY_PORT": port, **(extra or {})})
    proc = subprocess.run(
        [str(harness.binary("codex-gateway")), "connect", client, "--write", "--key", gateway.api_key],
        env=env, capture_output=True, timeout=60,
    )
    out = proc.stdout.decode(errors="replace") + proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, out
    return out


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{argv[0]} did not finish within {TIMEOUT}s\n{(e.stderr or b'').decode(errors='replace')}")


def show(proc: subprocess.CompletedProcess) -> str:
    return (f"exit {proc.returncode}\n--- stdout:\n{proc.stdout.decode(errors='replace')[-4000:]}"
            f"\n--- stderr:\n{proc.stderr.decode(errors='replace')[-4000:]}")


def second_write_changes_nothing(home: Path, gateway, client: str, extra: dict[str, str] | None = None) -> None:
    before = snapshot(home)
    out = connect(home, gateway, client, extra)
    assert "unchanged" in out and "backed up" not in out, out
    assert snapshot(home) == before, "a second --write changed a file or made a backup"


def test_codex_cli_uses_the_config_connect_wrote(tmp_path, gateway, fake):
    home, work = tmp_path / "home", tmp_path / "work"
    codex_home = home / ".codex"
    for d in (codex_home, work):
        d.mkdir(parents=True)
    mine = "# my settings\napproval_policy = \"never\"\n\n[analytics]\nenabled = false\n\n[features]\nplugins = false\n"
    (codex_home / "config.toml").write_text(mine, "utf-8")
    extra = {"CODEX_HOME": str(codex_home)}
    out = connect(home, gateway, "codex", extra)
    assert "backed up" in out and (codex_home / "config.toml.bak").read_text("utf-8") == mine, out
    written = (codex_home / "config.toml").read_text("utf-8")
    cfg = tomllib.loads(written)
    assert written.startswith("# my settings\n"), written
    assert cfg["approval_policy"] == "never" and cfg["analytics"]["enabled"] is False, written
    assert cfg["model_providers"]["codex-gateway"]["base_url"] == gateway.v1, written
    # The gateway serves the inbound WebSocket (the default): the provider says so.
    assert cfg["model_providers"]["codex-gateway"]["supports_websockets"] is True, written
    second_write_changes_nothing(home, gateway, "codex", extra)

    # The key goes in the variable the file names (env_key): the one thing outside the file.
    env = env_for(home, {**extra, "CODEX_GATEWAY_API_KEY": gateway.api_key})
    since = len(gateway.log_text())
    proc = run([str(harness.node_bin("codex")), "exec", "--skip-git-repo-check", "say connect-codex-3141"], work, env)
    assert proc.returncode == 0, show(proc)
    assert "You said: say connect-codex-3141" in proc.stdout.decode(errors="replace"), show(proc)
    assert [r for r in fake.requests("responses") if r["method"] == "POST"], "the answer came through the gateway"
    # Over the WebSocket, not a fallback to HTTP (the access log names the socket's turns by their route).
    lines = [l for l in gateway.settled_log_text()[since:].splitlines() if " request request_id=" in l]
    responses = [l for l in lines if 'api="responses"' in l]
    ws = [l for l in responses if "route=/v1/responses (websocket) status=" in l]
    posts = [l for l in responses if "route=/v1/responses status=" in l]
    assert ws and not posts, f"ws turns {len(ws)}, posts {posts}\n{gateway.log_text()[since:][-4000:]}"


def test_claude_code_uses_the_settings_connect_wrote(tmp_path, gateway, fake):
    home, work = tmp_path / "home", tmp_path / "work"
    for d in (home / ".claude", work):
        d.mkdir(parents=True)
    mine = {"theme": "dark", "env": {"MY_VAR": "kept"}, "permissions": {"allow": ["Bash(ls:*)"]}}
    (home / ".claude" / "settings.json").write_text(json.dumps(mine), "utf-8")
    out = connect(home, gateway, "claude-code")
    assert "backed up" in out, out
    settings = json.loads((home / ".claude" / "settings.json").read_text("utf-8"))
    assert settings["theme"] == "dark" and settings["permissions"] == mine["permissions"], settings
    assert settings["env"]["MY_VAR"] == "kept" and settings["env"]["ANTHROPIC_BASE_URL"] == gateway.url, settings
    second_write_changes_nothing(home, gateway, "claude-code")

    proc = run([str(harness.node_bin("claude")), "-p", "say connect-cc-2718"], work, env_for(home))
    assert proc.returncode == 0, show(proc)
    assert "Hello from fake-codex" in proc.stdout.decode(errors="replace"), show(proc)
    bodies = [r["body"] for r in fake.requests("responses") if r["method"] == "POST"]
    assert any("connect-cc-2718" in json.dumps(b) for b in bodies), "the prompt went through the gateway"


def test_gemini_cli_uses_the_settings_connect_wrote(tmp_path, gateway, fake):
    home, work = tmp_path / "home", tmp_path / "work"
    for d in (home / ".gemini", work):
        d.mkdir(parents=True)
    mine = {"privacy": {"usageStatisticsEnabled": False}, "telemetry": {"enabled": False},
            "ui": {"theme": "Default"}}
    (home / ".gemini" / "settings.json").write_text(json.dumps(mine), "utf-8")
    (home / ".gemini" / ".env").write_text("MY_SETTING=1\n", "utf-8")
    out = connect(home, gateway, "gemini")
    assert out.count("backed up") == 2, out
    settings = json.loads((home / ".gemini" / "settings.json").read_text("utf-8"))
    assert settings["ui"] == mine["ui"] and settings["telemetry"] == mine["telemetry"], settings
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key", settings
    dotenv = (home / ".gemini" / ".env").read_text("utf-8")
    assert dotenv.startswith("MY_SETTING=1\n") and f"GOOGLE_GEMINI_BASE_URL={gateway.url}\n" in dotenv, dotenv
    second_write_changes_nothing(home, gateway, "gemini")

    # A trusted workspace is the CLI's own question about this directory, not a gateway setting.
    env = env_for(home, {"GEMINI_CLI_TRUST_WORKSPACE": "true", "CI": "1"})
    proc = run([str(harness.node_bin("gemini")), "-p", "say connect-gem-1618"], work, env)
    assert proc.returncode == 0, show(proc)
    assert "Hello from fake-codex. You said:" in proc.stdout.decode(errors="replace"), show(proc)
