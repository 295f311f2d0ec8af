"""The official Codex CLI signing a developer in to the gateway with their own user (`gateway_oauth`, oauth/).

The provider is what `codex-gateway connect codex --write --sign-in` writes. The sign-in is started the way the
CLI's own front ends start it: `codex app-server` (the JSON-RPC server the TUI and the IDE extensions talk to)
with the `explicitGatewayOauth` capability, then `account/gatewayOAuth/login` with `deviceAuth` (the answer
carries the user code and the verification page) or without (the browser URL arrives in an
`account/gatewayOAuth/changed` notification). The test plays the browser with a dashboard session. Then
`codex exec` through the gateway as that user (the access token lives 20 s, under the CLI's 30 s margin, so the
turn starts with a refresh), and the user disabled: refused at once. (Two gateways cannot share one SQLite data
directory; the same refusal on every instance of a team store is crates/gateway/tests/it/team/oauth.rs.)
"""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import threading
import time
import tomllib
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import harness

ADMIN = "oauth-admin-key-71c2"
PASSWORD = "a long enough password"
TIMEOUT = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def admin(gw, method: str, path: str, body=None) -> harness.HttpResult:
    return harness.http(method, gw.url + path, body, headers={"Authorization": f"Bearer {ADMIN}"})


def dashboard_session(gw, name: str) -> tuple[str, str]:
    """Sign in on the dashboard's login page: the session cookie and its CSRF token."""
    login = _cookies(urllib.request.Request(gw.url + "/dashboard/login"))["cgw_login"]
    req = urllib.request.Request(
        gw.url + "/dashboard/login", method="POST",
        data=json.dumps({"name": name, "password": PASSWORD, "csrf": login}).encode(),
        headers={"Cookie": f"cgw_login={login}", "Content-Type": "application/json"},
    )
    session = _cookies(req)["cgw_session"]
    page = harness.http("GET", gw.url + "/dashboard/setup", headers={"Cookie": f"cgw_session={session}"}).text
    csrf = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    return f"cgw_session={session}", csrf


def _cookies(req: urllib.request.Request) -> dict[str, str]:
    """The cookies an answer sets (every Set-Cookie header: harness.http keeps one of each name)."""
    with harness._OPENER.open(req, timeout=30) as resp:
        out = {}
        for c in resp.headers.get_all("Set-Cookie") or []:
            k, _, v = c.split(";", 1)[0].partition("=")
            out[k.strip()] = v.strip()
        return out


# What would let a process reach a keyring: the session D-Bus (the Secret Service) and where its socket is found.
# Every process here runs without them, as on a server over SSH or in a container.
NO_KEYRING = ("DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "DISPLAY", "WAYLAND_DISPLAY")


def keyringless_env(extra: dict[str, str]) -> dict[str, str]:
    env = harness.child_env(extra)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_API_KEY", "RUST_LOG", *NO_KEYRING):
        env.pop(name, None)
    return env


class AppServer:
    """`codex app-server` on stdio: JSON-RPC requests and the notifications it sends."""

    def __init__(self, codex_home: Path, home: Path):
        env = keyringless_env({"HOME": str(home), "CODEX_HOME": str(codex_home), "NO_COLOR": "1"})
        self.proc = subprocess.Popen(
            [str(harness.node_bin("codex")), "app-server"], env=env, cwd=str(home),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(home / "app-server.log", "ab"),
            start_new_session=True,
        )
        self.messages: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.next_id = 1

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.messages.put(json.loads(line))
            except json.JSONDecodeError:
                pass

    def send(self, msg: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(msg) + "\n").encode())
        self.proc.stdin.flush()

    def request(self, method: str, params: dict) -> dict:
        rid = self.next_id
        self.next_id += 1
        self.send({"id": rid, "method": method, "params": params})
        msg = self.wait(lambda m: m.get("id") == rid, f"the answer to {method}")
        assert "error" not in msg, msg
        return msg["result"]

    def wait(self, pred, what: str, timeout: float = 60) -> dict:
        for m in self.seen:
            if pred(m):
                self.seen.remove(m)
                return m
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                m = self.messages.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if pred(m):
                return m
            self.seen.append(m)
        raise AssertionError(f"codex app-server: no {what} within {timeout}s; seen {self.seen[-10:]}")

    def start(self) -> None:
        # Explicit sign-in: the server does not open a browser by itself (there is none here).
        self.request("initialize", {"clientInfo": {"name": "gateway-oauth-test", "version": "1"},
                                    "capabilities": {"experimentalApi": True, "explicitGatewayOauth": True}})
        self.send({"method": "initialized"})

    def sign_in_result(self) -> dict:
        m = self.wait(lambda m: m.get("method") == "account/gatewayOAuth/changed"
                      and m["params"]["status"] in ("succeeded", "failed"), "sign-in result")
        return m["params"]

    def signed_in(self) -> None:
        result = self.sign_in_result()
        assert result["status"] == "succeeded", result

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def connect(gw, config: Path, codex_home: Path, home: Path, *args: str, env: dict | None = None):
    """`codex-gateway connect codex --write --sign-in ARGS` on a machine without a keyring."""
    port = gw.url.rsplit(":", 1)[1]
    env = keyringless_env({"HOME": str(home), "CODEX_HOME": str(codex_home), "CODEX_GATEWAY_PORT": port,
                           "CODEX_GATEWAY_CONFIG": str(config), **(env or {})})
    return subprocess.run([str(harness.binary("codex-gateway")), "connect", "codex", "--write", "--sign-in", *args],
                          env=env, capture_output=True, timeout=60, text=True)


def offline(codex_home: Path) -> dict:
    """The switches the tests use everywhere, so nothing reaches beyond 127.0.0.1; the provider stays as written."""
    path = codex_home / "config.toml"
    text = path.read_text() + "\n[analytics]\nenabled = false\n\n[features]\nplugins = false\n"
    path.write_text(text)
    return tomllib.loads(text)


def write_provider(gw, config: Path, codex_home: Path, home: Path) -> dict:
    """`connect codex --write --sign-in` (it chooses the file store here: no keyring), plus the offline switches."""
    proc = connect(gw, config, codex_home, home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return offline(codex_home)


def codex_exec(codex_home: Path, home: Path, prompt: str) -> subprocess.CompletedProcess:
    env = keyringless_env({"HOME": str(home), "CODEX_HOME": str(codex_home), "NO_COLOR": "1"})
    env.pop("CODEX_GATEWAY_API_KEY", None)
    work = home / "work"
    work.mkdir(exist_ok=True)
    return subprocess.run([str(harness.node_bin("codex")), "exec", "--skip-git-repo-check", prompt], cwd=str(work),
                          env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)


def stored_token(codex_home: Path) -> dict:
    entries = json.loads((codex_home / "secrets" / "gateway_oauth.json").read_text())
    (entry,) = entries.values()
    return entry


def model_status(gw, access_token: str) -> int:
    r = harness.http("POST", gw.url + "/v1/responses", {"model": "gpt-5.4", "input": "hi", "stream": False},
                     headers={"x-gateway-token": f"Bearer {access_token}"})
    return r.status


@pytest.fixture
def signed_stack(tmp_path):
    work = tmp_path / "stack"
    work.mkdir()
    config = work / "gateway.toml"
    config.write_text(f"[oauth]\naccess_token_secs = 20\nredirect_port = {free_port()}\n")
    env = {"CODEX_GATEWAY_ADMIN_KEY": ADMIN, "CODEX_GATEWAY_CONFIG": str(config)}
    stack = harness.Stack.start(work, gateway_env=env)
    try:
        yield stack, config
    finally:
        stack.stop()


def test_device_and_browser_sign_in_a_turn_as_the_user_and_a_disabled_user_refused(signed_stack, tmp_path):
    stack, config = signed_stack
    gw = stack.gateway
    r = admin(gw, "POST", "/admin/users", {"name": "mia", "role": "member", "password": PASSWORD})
    assert r.status == 201, r.text
    user_id = r.json()["id"]
    cookie, csrf = dashboard_session(gw, "mia")

    home, codex_home = tmp_path / "home", tmp_path / "codex-home"
    home.mkdir()
    codex_home.mkdir()
    provider = write_provider(gw, config, codex_home, home)["model_providers"]["codex-gateway"]
    assert "env_key" not in provider and provider["gateway_oauth"]["delivery"]["kind"] == "header"

    # 1. Device code: the CLI's code, approved on the verification page by the signed-in user.
    app = AppServer(codex_home, home)
    try:
        app.start()
        prompt = app.request("account/gatewayOAuth/login", {"deviceAuth": True})["prompt"]
        assert prompt["verificationUrl"] == gw.url + "/dashboard/oauth/device", prompt
        page = harness.http("GET", prompt["verificationUrl"], headers={"Cookie": cookie})
        assert page.status == 200 and 'id="device-form"' in page.text
        r = harness.http("POST", gw.url + "/dashboard/api/oauth/device",
                         {"user_code": prompt["userCode"], "approve": True},
                         headers={"Cookie": cookie, "X-CSRF-Token": csrf})
        assert r.status == 200, r.text
        app.signed_in()
    finally:
        app.stop()
    first = stored_token(codex_home)
    assert first["access_token"].startswith("cga_")

    # 2. A turn as the user, no client key: the 20 s token is refreshed first (the CLI's 30 s margin).
    stack.fake.reset_requests()
    done = codex_exec(codex_home, home, "say hi")
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode() + stack.describe()
    assert stack.fake.requests("responses"), "the turn reached the backend"
    assert "Model metadata" not in done.stderr.decode(), "the catalog came from the gateway (model_catalog_url)"
    refreshed = stored_token(codex_home)
    assert refreshed["refresh_token"] != first["refresh_token"], "rotated on refresh"
    log = gw.settled_log_text()
    assert f"user:{user_id}" in log, "the turn is the user's in the access log"
    audit = admin(gw, "GET", "/admin/audit?limit=200").text
    for action in ("oauth.device.approve", "oauth.token.issue", "oauth.token.refresh"):
        assert action in audit, action
    assert first["refresh_token"] not in audit and refreshed["access_token"] not in audit

    # 3. Loopback: the browser (this test, with the session) follows the authorization URL to the CLI's port.
    other_home = tmp_path / "codex-home-2"
    other_home.mkdir()
    write_provider(gw, config, other_home, home)
    app = AppServer(other_home, home)
    try:
        app.start()
        app.send({"id": 99, "method": "account/gatewayOAuth/login", "params": {}})
        started = app.wait(lambda m: m.get("method") == "account/gatewayOAuth/changed"
                           and m["params"].get("authUrl"), "the authorization URL")
        auth_url = started["params"]["authUrl"]
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(auth_url).query)
        assert auth_url.startswith(gw.url + "/dashboard/oauth/authorize?") and q["code_challenge_method"] == ["S256"]
        r = harness.http("GET", auth_url, headers={"Cookie": cookie})
        # urllib followed the redirect to the CLI's loopback listener, which answered the browser.
        assert r.status == 200, r.text
        app.signed_in()
    finally:
        app.stop()
    assert stored_token(other_home)["access_token"].startswith("cga_")

    # 4. The user disabled: their token is refused at once, and so is their CLI.
    token = stored_token(other_home)["access_token"]
    assert model_status(gw, token) == 200
    r = admin(gw, "PATCH", f"/admin/users/{user_id}", {"disabled": True})
    assert r.status == 200, r.text
    assert model_status(gw, token) == 401
    # Disabling revoked the refresh tokens too: the CLI cannot get a new access token either.
    r = harness.http("POST", gw.url + "/dashboard/oauth/token",
                     urllib.parse.urlencode({"grant_type": "refresh_token", "client_id": "codex-cli",
                                             "refresh_token": stored_token(codex_home)["refresh_token"]}).encode(),
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (r.status, r.json()["error"]) == (400, "invalid_grant"), r.text


def device_sign_in(gw, codex_home: Path, home: Path, cookie: str, csrf: str) -> dict:
    """The CLI's device-code sign-in, approved by the test as the dashboard user: the CLI's result."""
    app = AppServer(codex_home, home)
    try:
        app.start()
        prompt = app.request("account/gatewayOAuth/login", {"deviceAuth": True})["prompt"]
        r = harness.http("POST", gw.url + "/dashboard/api/oauth/device",
                         {"user_code": prompt["userCode"], "approve": True},
                         headers={"Cookie": cookie, "X-CSRF-Token": csrf})
        assert r.status == 200, r.text
        return app.sign_in_result()
    finally:
        app.stop()


def test_connects_sign_in_config_works_with_no_keyring_and_asks_for_no_client_key(signed_stack, tmp_path):
    """Issue 88: `connect codex --write --sign-in` where the gateway requires client keys exited 1 asking for a key
    it then wrote nowhere; and it wrote no `credentials_store`, so a CLI with no keyring got its token (200) and
    failed to keep it. Here: no D-Bus session, no keyring, CODEX_GATEWAY_API_KEY set; connect's file as written."""
    stack, config = signed_stack
    gw = stack.gateway
    r = admin(gw, "POST", "/admin/users", {"name": "ana", "role": "member", "password": PASSWORD})
    assert r.status == 201, r.text
    cookie, csrf = dashboard_session(gw, "ana")
    home = tmp_path / "home"
    home.mkdir()

    # The control: the keyring store (the CLI's default) cannot keep the token on this machine.
    keyring_home = tmp_path / "codex-home-keyring"
    keyring_home.mkdir()
    proc = connect(gw, config, keyring_home, home, "--credentials-store", "keyring")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    offline(keyring_home)
    result = device_sign_in(gw, keyring_home, home, cookie, csrf)
    assert result["status"] == "failed", f"a keyring was found here, so this test proves nothing: {result}"

    # connect as a developer runs it where the gateway requires client keys: no key asked for, none written.
    codex_home = tmp_path / "codex-home"
    codex_home.mkdir()
    proc = connect(gw, config, codex_home, home, env={"CODEX_GATEWAY_API_KEY": "a-client-key-4f1e"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'credentials_store = "file"' in proc.stdout, proc.stdout
    text = (codex_home / "config.toml").read_text()
    assert "a-client-key-4f1e" not in text
    provider = tomllib.loads(text)["model_providers"]["codex-gateway"]
    assert "env_key" not in provider and provider["gateway_oauth"]["credentials_store"] == "file"
    offline(codex_home)

    result = device_sign_in(gw, codex_home, home, cookie, csrf)
    assert result["status"] == "succeeded", result
    assert stored_token(codex_home)["access_token"].startswith("cga_")

    stack.fake.reset_requests()
    done = codex_exec(codex_home, home, "say hi")
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode() + stack.describe()
    assert stack.fake.requests("responses"), "the turn reached the backend"
