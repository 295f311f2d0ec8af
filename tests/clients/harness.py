"""Process harness for the real-client tests: starts fake-codex and codex-gateway on 127.0.0.1.

Used by tests/clients/conftest.py (the main venv) and tests/clients/litellm/conftest.py (the litellm
venv), so it needs nothing beyond the Python standard library.

    stack = Stack.start(tmp_dir)      # fake-codex (1 account, auth.json) + gateway in linked mode
    stack.gateway.v1                   # "http://127.0.0.1:PORT/v1"
    stack.fake.enqueue({"kind": "text", "text": "hi"})
    stack.fake.requests("responses")   # what the gateway sent upstream
    stack.stop()

Nothing here talks to anything but 127.0.0.1: proxy variables are removed from this process and from
every child.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
API_KEY = "test-key"
STARTUP_TIMEOUT = float(os.environ.get("CLIENT_TESTS_STARTUP_TIMEOUT", "30"))

PROXY_VARS = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NPM_CONFIG_PROXY",
    "NPM_CONFIG_HTTPS_PROXY",
)

# Offline switches for every SDK and CLI the tests start.
OFFLINE_ENV = {
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
    "DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    "NO_UPDATE_NOTIFIER": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "HF_HUB_OFFLINE": "1",
}


def scrub_env(env: dict[str, str] | os._Environ) -> None:
    """Remove proxy settings and turn on the offline switches, in place."""
    for name in PROXY_VARS:
        env.pop(name, None)
    env.update(OFFLINE_ENV)


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    scrub_env(env)
    if extra:
        env.update(extra)
    return env


def target_dir() -> Path:
    t = os.environ.get("CARGO_TARGET_DIR")
    return Path(t) if t else REPO / "target"


def binary(name: str) -> Path:
    path = target_dir() / "debug" / name
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RuntimeError(
            f"{path} is missing: build it first with `cargo build --workspace --bins` (scripts/test does)"
        )
    return path


# --- HTTP to 127.0.0.1 without proxies -----------------------------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class HttpResult:
    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None,
         timeout: float = 30, cafile: Path | None = None) -> HttpResult:
    """One request to 127.0.0.1; `cafile` is the root to trust for an https URL (a TLS fake's certificate)."""
    host = urllib.parse.urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"tests only talk to loopback, not {url}")
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    opener = _OPENER
    if cafile is not None:
        context = ssl.create_default_context(cafile=str(cafile))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(req, timeout=timeout) as resp:
            return HttpResult(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as e:
        return HttpResult(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


# --- child processes --------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies (e.g. killed by a timeout)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Proc:
    """A child process whose stdout lines are drained by a thread into a list (and a queue)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.popen = subprocess.Popen(
            argv,
            env=env,
            cwd=str(cwd),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._log,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._thread = threading.Thread(target=self._drain, name=f"{name}-stdout", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.lines.append(line)
            self._queue.put(line)
        self._queue.put(None)

    def next_line(self, timeout: float) -> str:
        """The next stdout line; raises with the log when the process ends or stays silent."""
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(
                f"{self.name} printed nothing on stdout within {timeout}s\n{self.describe()}"
            ) from None
        if line is None:
            self.popen.wait(timeout=5)
            raise RuntimeError(
                f"{self.name} exited (code {self.popen.returncode}) before printing its address\n{self.describe()}"
            )
        return line

    def wait_for_prefix(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.name}: no stdout line starting {prefix!r}\n{self.describe()}")
            line = self.next_line(left)
            if line.startswith(prefix):
                return line

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""

    def describe(self, tail: int = 80) -> str:
        out = "\n".join(self.lines[-tail:])
        err = "\n".join(self.log_text().splitlines()[-tail:])
        return (
            f"--- {self.name}: {' '.join(self.argv)}\n"
            f"--- stdout (last {tail} lines):\n{out}\n"
            f"--- stderr ({self.log_path}, last {tail} lines):\n{err}"
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.popen.wait(timeout=10)
        self._log.close()


def _address(line: str, prefix: str) -> str:
    url = line[len(prefix):].strip().rstrip("/")
    parts = urllib.parse.urlsplit(url)
    if parts.hostname != "127.0.0.1" or not parts.port:
        raise RuntimeError(f"unexpected listening line: {line!r}")
    return url


def _wait_for_json_file(path: Path, proc: Proc, timeout: float = 10) -> None:
    """fake-codex writes auth.json after printing its account lines: wait until it is complete."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            json.loads(path.read_text("utf-8"))
            return
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline or not proc.alive():
            raise RuntimeError(f"fake-codex did not write {path}\n{proc.describe()}")
        time.sleep(0.02)


# --- fake-codex -------------------------------------------------------------------------------------


def answered(request: dict[str, Any]) -> dict[str, Any]:
    """A recorded request's body as the backend answered it: a message chained with `previous_response_id` on the
    upstream WebSocket carries only its new items, and fake-codex records the whole input it put together beside
    it (`chained_input`)."""
    body = dict(request.get("body") or {})
    if request.get("chained_input") is not None:
        body.pop("previous_response_id", None)
        body["input"] = request["chained_input"]
    return body


class Fake:
    """fake-codex and its HTTP control API (/_fake/*)."""

    PREFIX = "fake-codex listening on "

    def __init__(self, proc: Proc, url: str, ca: Path | None = None):
        self.proc = proc
        self.url = url
        # The certificate to trust when the fake serves TLS (`tls=True`).
        self.ca = ca
        self.accounts: list[tuple[str, str]] = []  # (account id, email) from the startup lines

    @classmethod
    def start(cls, work: Path, accounts: int = 1, auth_json: Path | None = None,
              extra_args: list[str] | None = None, tls: bool = False) -> "Fake":
        argv = [str(binary("fake-codex")), "--port", "0", "--accounts", str(accounts)]
        if auth_json is not None:
            argv += ["--write-auth-json", str(auth_json)]
        ca = work / "fake-ca.pem" if tls else None
        if ca is not None:
            argv += ["--tls", "--tls-ca-out", str(ca)]
        argv += extra_args or []
        proc = Proc("fake-codex", argv, child_env({"RUST_LOG": "info"}), work / "fake-codex.log", work)
        try:
            first = proc.next_line(STARTUP_TIMEOUT)
            if not first.startswith(cls.PREFIX):
                raise RuntimeError(f"fake-codex: first stdout line was {first!r}\n{proc.describe()}")
            fake = cls(proc, _address(first, cls.PREFIX), ca)
            for _ in range(max(accounts, 1 if auth_json else 0)):
                line = proc.next_line(STARTUP_TIMEOUT)
                parts = line.split()
                if len(parts) >= 3 and parts[0] == "account":
                    fake.accounts.append((parts[1], parts[2]))
            if auth_json is not None:
                _wait_for_json_file(auth_json, proc)
            return fake
        except BaseException:
            proc.stop()
            raise

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        r = http(method, self.url + path, body, cafile=self.ca)
        if r.status >= 300:
            raise RuntimeError(f"fake-codex {method} {path} -> {r.status}: {r.text}")
        return r.json() if r.body.strip() else None

    def enqueue(self, scenario: dict[str, Any], account_id: str | None = None) -> None:
        self._call("POST", "/_fake/enqueue", {"account_id": account_id, "scenario": scenario})

    def requests(self, path: str | None = "responses") -> list[dict[str, Any]]:
        """Recorded upstream requests (oldest first); `path` filters (e.g. "responses")."""
        q = "" if path is None else "?" + urllib.parse.urlencode({"path": path})
        data = self._call("GET", "/_fake/requests" + q)
        if isinstance(data, dict) and "requests" in data:
            data = data["requests"]
        return sorted(data, key=lambda r: r.get("seq", 0))

    def response_bodies(self) -> list[dict[str, Any]]:
        """Bodies of the POSTs to .../responses as the backend answered them, oldest first: a turn chained on the
        upstream WebSocket with its whole input (see `answered`)."""
        return [answered(r) for r in self.requests("responses") if r.get("method") == "POST"]

    def reset_requests(self) -> None:
        self._call("POST", "/_fake/reset-requests")

    def add_account(self, plan: str = "plus", email: str | None = None) -> Any:
        body: dict[str, Any] = {"plan": plan}
        if email is not None:
            body["email"] = email
        return self._call("POST", "/_fake/accounts", body)

    def token_calls(self) -> Any:
        return self._call("GET", "/_fake/token-calls")

    def expire(self, account_id: str) -> Any:
        return self._call("POST", f"/_fake/accounts/{account_id}/expire")


def header(record: dict[str, Any], name: str) -> str | None:
    """First value of a header in a recorded request (names are lower-cased by the fake)."""
    for k, v in record.get("headers", []):
        if k.lower() == name.lower():
            return v
    return None


# --- codex-gateway ----------------------------------------------------------------------------------


class Gateway:
    PREFIX = "codex-gateway listening on "
    OLLAMA_PREFIX = "codex-gateway ollama bridge listening on "

    def __init__(self, proc: Proc, url: str, ollama: str | None = None):
        self.proc = proc
        self.url = url
        self.v1 = url + "/v1"
        self.api_key = API_KEY
        # The Ollama bridge's base URL (no auth, Ollama routes and /v1), when started with ollama=True.
        self.ollama = ollama

    @classmethod
    def start(cls, work: Path, fake: Fake, codex_home: Path, extra_env: dict[str, str] | None = None,
              extra_args: list[str] | None = None, ollama: bool = False, port: int = 0) -> "Gateway":
        data_dir = work / "gateway-data"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = child_env(
            {
                "CODEX_HOME": str(codex_home),
                "CODEX_GATEWAY_DATA_DIR": str(data_dir),
                "CODEX_GATEWAY_UPSTREAM_BASE_URL": f"{fake.url}/backend-api/codex",
                "CODEX_GATEWAY_CHATGPT_BASE_URL": f"{fake.url}/backend-api",
                "CODEX_GATEWAY_AUTH_ISSUER": fake.url,
                "CODEX_GATEWAY_API_KEY": API_KEY,
                "RUST_LOG": "info",
                "HOME": str(work / "home"),
            }
        )
        (work / "home").mkdir(exist_ok=True)
        if ollama:
            env.update({"CODEX_GATEWAY_OLLAMA_ENABLED": "1", "CODEX_GATEWAY_OLLAMA_PORT": "0"})
        if extra_env:
            env.update(extra_env)
        argv = [str(binary("codex-gateway")), "serve", "--port", str(port)] + (extra_args or [])
        proc = Proc("codex-gateway", argv, env, work / "gateway.log", work)
        try:
            line = proc.wait_for_prefix(cls.PREFIX, STARTUP_TIMEOUT)
            bridge = None
            if ollama:
                bridge = _address(proc.wait_for_prefix(cls.OLLAMA_PREFIX, STARTUP_TIMEOUT), cls.OLLAMA_PREFIX)
            return cls(proc, _address(line, cls.PREFIX), bridge)
        except BaseException:
            proc.stop()
            raise

    def log_text(self) -> str:
        return self.proc.log_text()

    def settled_log_text(self) -> str:
        """The log once the lines of requests that just ended are in it: a serving gateway writes its information
        lines (the access log among them) in batches, at most 100 ms after a batch's first line."""
        time.sleep(0.3)
        return self.log_text()


class Stack:
    """fake-codex + a gateway linked to the fake's auth.json, in a private work directory."""

    def __init__(self, work: Path, fake: Fake, gateway: Gateway, codex_home: Path):
        self.work = work
        self.fake = fake
        self.gateway = gateway
        self.codex_home = codex_home

    @classmethod
    def start(cls, work: Path, accounts: int = 1, gateway_env: dict[str, str] | None = None,
              ollama: bool = False) -> "Stack":
        work.mkdir(parents=True, exist_ok=True)
        codex_home = work / "codex-home"
        codex_home.mkdir(exist_ok=True)
        fake = Fake.start(work, accounts=accounts, auth_json=codex_home / "auth.json")
        try:
            gateway = Gateway.start(work, fake, codex_home, extra_env=gateway_env, ollama=ollama)
        except BaseException:
            fake.proc.stop()
            raise
        return cls(work, fake, gateway, codex_home)

    def stop(self) -> None:
        self.gateway.proc.stop()
        self.fake.proc.stop()

    def describe(self) -> str:
        return self.gateway.proc.describe(200) + "\n" + self.fake.proc.describe(40)


def node_bin(name: str) -> Path:
    """A CLI installed by scripts/setup-test-deps in tests/clients/node/node_modules/.bin, or the one in
    `CODEX_GATEWAY_CLI_BIN_DIR` when that names a folder holding it (scripts/release-radar: the newest releases)."""
    override = os.environ.get("CODEX_GATEWAY_CLI_BIN_DIR")
    if override and (Path(override) / name).exists():
        return Path(override) / name
    path = REPO / "tests" / "clients" / "node" / "node_modules" / ".bin" / name
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run scripts/setup-test-deps")
    return path
