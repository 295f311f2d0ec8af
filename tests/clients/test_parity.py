"""The official Codex CLI as the oracle of what the backend is sent (issue 57; docs/protocol.md "Identity").

Each scenario runs the real `codex exec` twice against one fake-codex (TLS, as the backend is reached):
- straight, with its ChatGPT login and its built-in provider (`openai_base_url` / `chatgpt_base_url` pointed at
  the fake): what the official client sends;
- as a client of the gateway (the README's provider setup), the gateway linked to the same login (the same
  CODEX_HOME, so the same account and installation id): what the gateway sends for it.
What reached the fake is compared request by request: the transport, the header names in order, the identity
headers' values, the turn metadata, the WebSocket handshake and messages, and the body's members and value
shapes. Every difference must be listed in EXPLAINED with the reason it cannot (yet) be otherwise; anything else
fails the test. The report of each scenario is written to tests/clients/output/parity/ for reading.

Over the WebSocket and over SSE: the fake refuses the handshake (426) for the SSE runs, on which both the official
client and the gateway send over HTTP.

The CLI is `tests/clients/node/node_modules/.bin/codex` (the version package-lock.json pins), or the one
`CODEX_CLI_BIN` names (scripts/test --only parity with CODEX_CLI_VERSION=x.y.z installs another version there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

import harness

TIMEOUT = 120
# The fake's API key for the reference runs (the CLI as a custom-provider client, straight to the fake).
REFERENCE_KEY = "parity-reference-key"
OUTPUT = harness.REPO / "tests" / "clients" / "output" / "parity"

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

# Differences the gateway cannot (yet) avoid, by the path a difference is reported at (a regular expression), with
# why. docs/protocol.md lists the same.
EXPLAINED: dict[str, str] = {
    # What the official client decides from its own provider setup, before any byte reaches the gateway: the same
    # difference shows between its straight request and its request to a custom provider (the reference run).
    r"\[client-side\]$": "the CLI sends it so to a custom provider too (its tools, its items' ids and internal "
    "metadata, `text.verbosity` from its bundled catalog): decided before any byte reaches the gateway",
    # The CLI's warm-up to a custom provider carries no effort for a model outside its bundled catalog (gpt-5.4 in
    # 0.171), so neither does the turn metadata the gateway writes for it; the socket's handshake carries the
    # warm-up's metadata. A reference run cannot show it (a custom provider without WebSocket gets no warm-up).
    r"^(warm-up\.)?handshake\.x-codex-turn-metadata\.<members>\.reasoning_effort$|"
    r"^warm-up\.body\.client_metadata\.x-codex-turn-metadata\.<members>\.reasoning_effort$":
    "the CLI's own warm-up to a custom provider names no effort for a model its bundled catalog lacks: decided "
    "before any byte reaches the gateway",
    # Since issue 72 the gateway passes its client's warm-up on over the upstream WebSocket (its socket opens with
    # it, turn metadata `request_kind: prewarm`) and chains later turns as the client does (issue 61): the warm-up,
    # `previous_response_id` and the handshake's turn metadata need no explanation any more.
}


# --- running the CLI ------------------------------------------------------------------------------------------


def codex_bin() -> Path:
    override = os.environ.get("CODEX_CLI_BIN")
    return Path(override) if override else harness.node_bin("codex")


def cli_version() -> str:
    """The CLI's version (`codex-cli 0.171.0`), which the gateway is configured to present, as a user following
    the client would: its calls beside the turns then carry what this version's do."""
    out = subprocess.run([str(codex_bin()), "--version"], capture_output=True, text=True, timeout=60).stdout
    found = re.search(r"(\d+\.\d+\.\d+)", out)
    assert found, f"no version in {out!r}"
    return found.group(1)


class World:
    """One fake-codex (TLS) and a gateway linked to the login the straight runs use."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.home = tmp / "codex-home"  # the login: auth.json, installation_id; the straight runs' CODEX_HOME
        self.home.mkdir(parents=True)
        self.fake = harness.Fake.start(tmp, accounts=0, auth_json=self.home / "auth.json", tls=True)
        assert self.fake.ca is not None
        ca = str(self.fake.ca)
        (self.home / "config.toml").write_text(
            f'openai_base_url = "{self.fake.url}/backend-api/codex"\n'
            f'chatgpt_base_url = "{self.fake.url}/backend-api/"\n'
            "[analytics]\nenabled = false\n",
            "utf-8",
        )
        self.version = cli_version()
        gateway_config = tmp / "gateway.toml"
        gateway_config.write_text(f'[upstream]\nclient_version = "{self.version}"\n', "utf-8")
        self.gateway = harness.Gateway.start(
            tmp, self.fake, self.home,
            extra_env={"CODEX_GATEWAY_CA_BUNDLE": ca, "CODEX_GATEWAY_CONFIG": str(gateway_config)},
        )
        self.via_home = tmp / "via-home"
        self.via_home.mkdir()
        self.reference_home = tmp / "reference-home"
        self.reference_home.mkdir()
        self.fake._call("POST", "/_fake/api-keys", {"key": REFERENCE_KEY})
        self.runs = 0

    def stop(self) -> None:
        self.gateway.proc.stop()
        self.fake.proc.stop()

    def refuse_websocket(self) -> None:
        self.fake._call("POST", "/_fake/websocket", {"refuse": True})

    def prefer_websocket(self, model: str, prefer: bool) -> None:
        self.fake._call("POST", f"/_fake/models/{model}/prefer-websockets", {"prefer": prefer})

    def responses_lite(self, model: str, lite: bool) -> None:
        self.fake._call("POST", f"/_fake/models/{model}/responses-lite", {"lite": lite})

    def exec(self, side: str, args: list[str], websocket: bool) -> subprocess.CompletedProcess:
        """Run `codex exec` as `straight` (built-in provider, ChatGPT login), `via` (a client of the gateway) or
        `reference` (the gateway's provider setup pointed straight at the fake's API-key endpoint: what the CLI
        itself sends to a custom provider, before any gateway)."""
        self.runs += 1
        home = self.tmp / f"home-{self.runs}"
        work = self.tmp / f"work-{self.runs}"
        for d in (home, work):
            d.mkdir()
        env = {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "NO_COLOR": "1",
        }
        if side == "straight":
            env.update(
                {
                    "CODEX_HOME": str(self.home),
                    "CODEX_CA_CERTIFICATE": str(self.fake.ca),
                    "CODEX_REFRESH_TOKEN_URL_OVERRIDE": f"{self.fake.url}/oauth/token",
                }
            )
        else:
            via = side == "via"
            home_dir = self.via_home if via else self.reference_home
            (home_dir / "config.toml").write_text(
                'model_provider = "gw"\n'
                "[model_providers.gw]\n"
                'name = "codex-gateway"\n'
                f'base_url = "{self.gateway.v1 if via else self.fake.url + "/v1"}"\n'
                'wire_api = "responses"\n'
                'env_key = "GW_KEY"\n'
                f"supports_websockets = {'true' if websocket and via else 'false'}\n"
                "[analytics]\nenabled = false\n",
                "utf-8",
            )
            env.update({"CODEX_HOME": str(home_dir), "GW_KEY": self.gateway.api_key if via else REFERENCE_KEY})
            if not via:
                env["CODEX_CA_CERTIFICATE"] = str(self.fake.ca)
        full = harness.child_env(env)
        for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_API_KEY", "RUST_LOG"):
            full.pop(name, None)
        try:
            return subprocess.run(
                [str(codex_bin()), "exec", "--skip-git-repo-check", *args],
                cwd=str(work),
                env=full,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=TIMEOUT,
            )
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"codex exec did not finish within {TIMEOUT}s: {(e.stderr or b'')[-3000:]!r}")


def show(proc: subprocess.CompletedProcess) -> str:
    return (
        f"exit {proc.returncode}\n--- stdout:\n{proc.stdout.decode(errors='replace')[-3000:]}"
        f"\n--- stderr:\n{proc.stderr.decode(errors='replace')[-4000:]}"
    )


# --- what is compared -----------------------------------------------------------------------------------------

# Connection-level and credential headers: compared apart (credentials) or not at all (connection).
CONNECTION = {"host", "content-length", "connection", "upgrade", "sec-websocket-key", "sec-websocket-version"}
# Identity headers whose values must be equal.
EXACT = (
    "originator",
    "version",
    "user-agent",
    "openai-beta",
    "x-codex-routing-hint",
    "x-codex-beta-features",
    "x-openai-subagent",
    "x-codex-parent-thread-id",
    "accept",
    "content-type",
    "content-encoding",
    "authorization",
    "chatgpt-account-id",
    "sec-websocket-extensions",
)
# Turn-metadata members whose values must be equal; the others (ids, times) are compared by shape.
METADATA_EXACT = (
    "installation_id",
    "agent_name",
    "window_number",
    "request_kind",
    "history_initialization",
    "thread_source",
    "turn_trigger",
    "sandbox",
    "sandbox_mode",
    "auto_review_enabled",
    "node_repl_auto_review_required",
    "node_repl_disabled",
    "analytics_enabled",
    "model",
    "reasoning_effort",
)


def shape(v: Any) -> Any:
    """A value with its contents replaced by their kinds (ids by their prefix and form)."""
    if isinstance(v, dict):
        return {k: shape(x) for k, x in v.items()}
    if isinstance(v, list):
        return [shape(x) for x in v]
    if isinstance(v, bool):
        return "<bool>"
    if isinstance(v, (int, float)):
        return "<num>"
    if isinstance(v, str):
        if re.fullmatch(UUID, v):
            return "<uuid>"
        if re.fullmatch(UUID + r":\d+", v):
            return "<uuid>:<n>"
        m = re.fullmatch(r"([a-z]+_)[0-9A-Za-z_-]{8,}", v)
        if m:
            return m.group(1) + "<id>"
        return "<str>"
    return v


def diff(path: str, a: Any, b: Any, out: list[tuple[str, Any, Any]]) -> None:
    """Differences of two shapes, as (path, straight, via gateway)."""
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b) and set(a) == set(b):
            out.append((path + ".<order>", list(a), list(b)))
        for k in a:
            if k in b:
                diff(f"{path}.{k}", a[k], b[k], out)
            else:
                out.append((f"{path}.{k}", a[k], "<absent>"))
        for k in b:
            if k not in a:
                out.append((f"{path}.{k}", "<absent>", b[k]))
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append((path + ".<length>", len(a), len(b)))
        for i, (x, y) in enumerate(zip(a, b)):
            diff(f"{path}[{i}]", x, y, out)
    elif a != b:
        out.append((path, a, b))


def headers(rec: dict) -> list[tuple[str, str]]:
    return [(k.lower(), v) for k, v in rec["headers"]]


def value(rec: dict, name: str) -> str | None:
    return next((v for k, v in headers(rec) if k == name), None)


def thread_ids(rec: dict) -> set[str]:
    """Every place the thread id appears: one value, as the official client sends it."""
    body = rec["body"]
    meta = body.get("client_metadata") or {}
    turn = json.loads(meta.get("x-codex-turn-metadata") or "{}")
    found = {value(rec, "session-id"), value(rec, "thread-id"), value(rec, "x-client-request-id"),
             body.get("prompt_cache_key"), meta.get("session_id"), meta.get("thread_id"), turn.get("thread_id")}
    window = value(rec, "x-codex-window-id") or ""
    found.add(window.rsplit(":", 1)[0] if window else None)
    return {f for f in found if f is not None}


def compare_turn_metadata(where: str, a: str | None, b: str | None, out: list, reference: str | None = None) -> None:
    """Turn metadata: its members in order, the exact ones' values, the others' shapes. A member list the CLI's
    request to a custom provider has too (`reference`) is marked client-side (it follows what the CLI knows of the
    model: `reasoning_effort` only for a model its catalog lists)."""
    if a is None or b is None:
        if a != b:
            out.append((where, a is not None, b is not None))
        return
    ma, mb = json.loads(a), json.loads(b)
    mc = json.loads(reference) if reference else None
    if list(ma) != list(mb):
        marked = " [client-side]" if mc is not None and list(mc) == list(mb) else ""
        # Only the effort missing: named apart, so that an explanation of it explains nothing else.
        if not marked and [m for m in ma if m != "reasoning_effort"] == list(mb):
            marked = ".reasoning_effort"
        out.append((where + ".<members>" + marked, list(ma), list(mb)))
    for k in ma:
        if k in mb and k in METADATA_EXACT and ma[k] != mb[k]:
            out.append((f"{where}.{k}", ma[k], mb[k]))
        elif k in mb and shape(ma[k]) != shape(mb[k]):
            out.append((f"{where}.{k}", shape(ma[k]), shape(mb[k])))


CLIENT_SIDE = "client-side: the CLI sends it so to a custom provider too (the reference run), before any gateway"


def compare(a: dict, b: dict, reference: dict | None) -> list[tuple[str, Any, Any]]:
    """The differences between what the official client sent (a) and what the gateway sent (b) for one turn; a body
    difference the CLI's own request to a custom provider (`reference`) has too is marked client-side."""
    out: list[tuple[str, Any, Any]] = []
    ta = "websocket" if a["http_version"] == "websocket" else "http"
    tb = "websocket" if b["http_version"] == "websocket" else "http"
    if ta != tb:
        out.append(("transport", ta, tb))
    where = "handshake" if ta == "websocket" else "headers"
    names_a = [k for k, _ in headers(a) if k not in CONNECTION]
    names_b = [k for k, _ in headers(b) if k not in CONNECTION]
    for name in sorted(set(names_a) ^ set(names_b)):
        out.append((f"{where}.header:{name}", name in names_a, name in names_b))
    common_a = [n for n in names_a if n in names_b]
    common_b = [n for n in names_b if n in names_a]
    if common_a != common_b:
        out.append((f"{where}.<order>", common_a, common_b))
    for name in EXACT:
        va, vb = value(a, name), value(b, name)
        if va != vb and not (va is None or vb is None):
            out.append((f"{where}.{name}", va if name != "authorization" else "<a>", vb if name != "authorization" else "<b>"))
    window_a, window_b = value(a, "x-codex-window-id"), value(b, "x-codex-window-id")
    if shape(window_a) != shape(window_b) or (window_a or ":").rsplit(":")[-1] != (window_b or ":").rsplit(":")[-1]:
        out.append((f"{where}.x-codex-window-id", window_a, window_b))
    reference_metadata = ((reference or {}).get("body", {}).get("client_metadata") or {}).get("x-codex-turn-metadata")
    compare_turn_metadata(f"{where}.x-codex-turn-metadata", value(a, "x-codex-turn-metadata"),
                          value(b, "x-codex-turn-metadata"), out, reference_metadata)
    for side, rec in (("straight", a), ("via", b)):
        ids = thread_ids(rec)
        if len(ids) != 1 or not re.fullmatch(UUID, next(iter(ids))):
            out.append((f"thread-ids.{side}", sorted(ids), "one UUID everywhere"))
    body_a, body_b = dict(a["body"]), dict(b["body"])
    meta_a, meta_b = body_a.pop("client_metadata", {}) or {}, body_b.pop("client_metadata", {}) or {}
    if sorted(meta_a) != sorted(meta_b):
        out.append(("body.client_metadata.<members>", sorted(meta_a), sorted(meta_b)))
    for k in ("x-codex-installation-id",):
        if meta_a.get(k) != meta_b.get(k):
            out.append((f"body.client_metadata.{k}", meta_a.get(k), meta_b.get(k)))
    compare_turn_metadata("body.client_metadata.x-codex-turn-metadata", meta_a.get("x-codex-turn-metadata"),
                          meta_b.get("x-codex-turn-metadata"), out, reference_metadata)
    body_c = dict(reference["body"]) if reference is not None else None
    if body_c is not None:
        body_c.pop("client_metadata", None)
    if body_a.get("previous_response_id"):
        # The official client chained this turn on its socket: only its new items are here; they are the tail of
        # the gateway's input (its own chained turn's new items, or its whole input).
        if not body_b.get("previous_response_id"):
            out.append(("body.previous_response_id", True, False))
        body_a.pop("previous_response_id")
        body_b.pop("previous_response_id", None)
        new = body_a.get("input") or []
        for other in (body_b, body_c):
            if other is not None:
                other["input"] = (other.get("input") or [])[-len(new):] if new else []
    body_diffs: list[tuple[str, Any, Any]] = []
    diff("body", shape(body_a), shape(body_b), body_diffs)
    client_side: set[tuple[str, str]] = set()
    if body_c is not None:
        reference_diffs: list[tuple[str, Any, Any]] = []
        diff("body", shape(body_a), shape(body_c), reference_diffs)
        client_side = {(p, json.dumps(y, sort_keys=True)) for p, _, y in reference_diffs}
    for p, x, y in body_diffs:
        marked = (p, json.dumps(y, sort_keys=True)) in client_side
        out.append((p + (" [client-side]" if marked else ""), x, y))
    return out


def as_warm_up(rec: dict, items: int) -> dict:
    """A recorded turn as the warm-up the CLI would have opened its socket with: `generate: false`, the first
    `items` of its input (the warm-up holds the turn's context, not yet its prompt)."""
    body = {**rec["body"], "generate": False}
    body["input"] = list(body.get("input") or [])[:items]
    return {**rec, "body": body}


def as_lite(rec: dict) -> dict:
    """A recorded request re-laid as Responses Lite (docs/protocol.md): its client-executed tools in a leading
    `additional_tools` item (the plain ones in the `functions` namespace), hosted tools left out."""
    body = dict(rec["body"])
    tools = body.pop("tools", None) or []
    plain = [t for t in tools if t.get("type") in ("function", "custom")]
    namespaces = [t for t in tools if t.get("type") == "namespace"]
    lite_tools = ([{"type": "namespace", "name": "functions", "description": "", "tools": plain}] if plain else [])
    lite_tools += namespaces
    leading = [{"type": "additional_tools", "id": f"at_{uuid.uuid4()}", "role": "developer", "tools": lite_tools}]
    body["input"] = leading + list(body.get("input") or [])
    body["parallel_tool_calls"] = False
    body["reasoning"] = {**(body.get("reasoning") or {}), "context": "all_turns"}
    return {**rec, "body": body}


def compare_prefaces(fake: harness.Fake, a: dict, b: dict) -> list[tuple[str, Any, Any]]:
    """The HTTP/2 connection each side's first request came on: its SETTINGS in order, its connection window
    update and the pseudo-header order of its first request (what a front end can tell clients apart by)."""
    out: list[tuple[str, Any, Any]] = []
    if a["http_version"] != b["http_version"]:
        return [("h2.version", a["http_version"], b["http_version"])]
    pa = fake._call("GET", f"/_fake/connections/{a['connection']}/preface")
    pb = fake._call("GET", f"/_fake/connections/{b['connection']}/preface")
    if not pa.get("http2"):
        return out
    for key in ("settings", "window_update"):
        if pa.get(key) != pb.get(key):
            out.append((f"h2.{key}", pa.get(key), pb.get(key)))
    pseudo = lambda p: [n for n in p.get("headers") or [] if n.startswith(":")]
    if pseudo(pa) != pseudo(pb):
        out.append(("h2.pseudo_headers", pseudo(pa), pseudo(pb)))
    return out


def responses(fake: harness.Fake, path: str = "/codex/responses") -> list[dict]:
    return [r for r in fake.requests(path) if r["method"] == "POST"]


def unexplained(diffs: list[tuple[str, Any, Any]]) -> list[tuple[str, Any, Any]]:
    return [d for d in diffs if not any(re.search(p, d[0]) for p in EXPLAINED)]


# --- the scenarios --------------------------------------------------------------------------------------------

# name -> (model, runs: each a list of exec arguments, or ("resume", args)); every run continues the previous one's
# session when it starts with "resume".
SCENARIOS: dict[str, tuple[str, list[list[str]]]] = {
    "plain": ("gpt-5.5", [["say parity-plain"]]),
    "tool_round_trip": (
        "gpt-5.5",
        [['run it <<fake {"kind": "tool_call", "name": "exec_command", "arguments": {"cmd": "echo parity-tool"}}>>']],
    ),
    "second_turn": ("gpt-5.5", [["say parity-first"], ["resume", "--last", "say parity-second"]]),
    "reasoning_effort": ("gpt-5.5", [["-c", 'model_reasoning_effort="high"', "say parity-effort"]]),
    "fast": ("gpt-5.5", [["-c", 'service_tier="fast"', "say parity-fast"]]),
    "compaction": (
        "gpt-5.5",
        [["say parity-before-compaction"], ["-c", "model_auto_compact_token_limit=500", "resume", "--last", "say parity-after"]],
    ),
    "model_preferring_websocket": ("gpt-5.5", [["say parity-preferred"]]),
    "model_not_preferring_websocket": ("gpt-5.4", [["say parity-not-preferred"]]),
    # A model the catalog flags `use_responses_lite`: the official client moves its tools and base instructions
    # into leading input items and says so in a header (docs/protocol.md "Responses Lite").
    "responses_lite": (
        "gpt-5.5",
        [['run it <<fake {"kind": "tool_call", "name": "exec_command", "arguments": {"cmd": "echo parity-lite"}}>>']],
    ),
}


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    yield w
    w.stop()


def run_side(world: World, side: str, model: str, runs: list[list[str]], websocket: bool) -> list[dict]:
    world.fake.reset_requests()
    for args in runs:
        proc = world.exec(side, ["-m", model, *args], websocket)
        assert proc.returncode == 0, side + "\n" + show(proc)
    return responses(world.fake, "/v1/responses" if side == "reference" else "/codex/responses")


@pytest.mark.parametrize("transport", ["websocket", "sse"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_the_gateway_sends_what_the_official_client_sends(world, scenario, transport):
    model, runs = SCENARIOS[scenario]
    websocket = transport == "websocket"
    if not websocket:
        world.refuse_websocket()
    world.prefer_websocket(model, scenario == "model_preferring_websocket")
    world.responses_lite(model, scenario == "responses_lite")
    straight = run_side(world, "straight", model, runs, websocket)
    via = run_side(world, "via", model, runs, websocket)
    reference = run_side(world, "reference", model, runs, websocket)
    if scenario == "responses_lite":
        # The CLI behind the gateway, like the reference run, does not know the model is lite, so it plans its
        # tools as for any model; its reference is re-laid as Responses Lite, so that its items line up with both
        # sides and the tools it chose count as the CLI's own (client-side).
        reference = [as_lite(r) for r in reference]
    # The warm-ups (`generate: false`), compared apart: the gateway passes its client's warm-up on over the upstream
    # WebSocket (issue 72), so each side's socket opens with one.
    warm = [r for r in straight if r["body"].get("generate") is False]
    warm_via = [r for r in via if r["body"].get("generate") is False]
    straight = [r for r in straight if r["body"].get("generate") is not False]
    via = [r for r in via if r["body"].get("generate") is not False]
    assert straight, "the official client sent no turn"
    # Members are compared in order at every depth only if fake-codex records them in the order they came (its
    # JSON maps keep insertion order): the CLI's own body does not list its members sorted.
    members = list(straight[0]["body"])
    assert members != sorted(members), f"fake-codex recorded the CLI's members sorted, not as sent: {members}"
    diffs: list[tuple[str, Any, Any]] = []
    if len(warm) != len(warm_via):
        diffs.append(("websocket.warm-up", len(warm), len(warm_via)))
    for a, b in zip(warm, warm_via):
        # The CLI's warm-up to the gateway is its own (a custom provider's): what differs in the reference turn
        # differs here the same way (client-side), the first turn's reference standing for it.
        stand_in = as_warm_up(reference[0], len(a["body"].get("input") or [])) if reference else None
        diffs += [("warm-up." + p, x, y) for p, x, y in compare(a, b, stand_in)]
    if len(straight) != len(via):
        diffs.append(("turns.<count>", len(straight), len(via)))
    for i, (a, b) in enumerate(zip(straight, via)):
        diffs += compare(a, b, reference[i] if i < len(reference) else None)
    if not websocket:
        diffs += compare_prefaces(world.fake, straight[0], via[0])
    OUTPUT.mkdir(parents=True, exist_ok=True)
    report = OUTPUT / f"{scenario}-{transport}.json"
    report.write_text(json.dumps({
        "scenario": scenario, "transport": transport,
        "differences": [{"path": p, "straight": x, "via_gateway": y,
                         "explained": next((EXPLAINED[k] for k in EXPLAINED if re.search(k, p)), None)}
                        for p, x, y in diffs],
    }, indent=1, default=str), "utf-8")
    left = unexplained(diffs)
    assert not left, f"unexplained differences ({report}):\n" + "\n".join(f"  {p}: {x!r} vs {y!r}" for p, x, y in left)
    # The transport is the same on both sides.
    assert all((r["http_version"] == "websocket") == websocket for r in straight + via), [
        r["http_version"] for r in straight + via]


# --- the calls beside the turns ---------------------------------------------------------------------------------

# The official client's calls the gateway makes too (docs/protocol.md "Identity"), by path.
SIDE_CALLS = ("/backend-api/wham/accounts/check", "/backend-api/codex/models")


def side_calls(fake: harness.Fake) -> dict[str, dict]:
    """The first recorded request to each of SIDE_CALLS."""
    out: dict[str, dict] = {}
    for r in fake.requests(None):
        if r["path"] in SIDE_CALLS and r["path"] not in out:
            out[r["path"]] = r
    return out


def test_the_gateways_own_calls_carry_what_the_official_clients_carry(world):
    """The workspace check and the catalog read, made by the official client when it starts a turn and by the
    gateway when it first uses the account: the same header names in the same order, the same `accept`,
    `accept-encoding` and `version`, and the same catalog query (the User-Agent's first word is the gateway's own
    `codex_cli_rs`, as the interactive CLI's; `codex exec` writes `codex_exec`)."""
    world.refuse_websocket()
    world.fake.reset_requests()
    assert world.exec("straight", ["-m", "gpt-5.5", "say parity-side"], False).returncode == 0
    straight = side_calls(world.fake)
    world.fake.reset_requests()
    assert world.exec("via", ["-m", "gpt-5.5", "say parity-side"], False).returncode == 0
    via = side_calls(world.fake)
    assert set(straight) == set(SIDE_CALLS), sorted(straight)
    assert set(via) == set(SIDE_CALLS), sorted(via)
    for path in SIDE_CALLS:
        a, b = straight[path], via[path]
        assert headers(a) and [n for n, _ in headers(a)] == [n for n, _ in headers(b)], (path, headers(a), headers(b))
        for name in ("accept", "accept-encoding", "version"):
            assert value(a, name) == value(b, name), (path, name, value(a, name), value(b, name))
        assert a.get("query") == b.get("query"), (path, a.get("query"), b.get("query"))
        agent = value(b, "user-agent") or ""
        assert agent.startswith(f"codex_cli_rs/{world.version} ("), agent
