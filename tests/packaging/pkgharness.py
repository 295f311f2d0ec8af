"""Shared pieces of the packaging tests (conftest.py hands the fixtures to pytest): the dist folder, a clean
environment, gateways and servers.

The tests take the dist folder scripts/dist writes (env CODEX_GATEWAY_DIST, default <repo>/dist) and
install from it the way a user would: the wheel with pip, the npm tarballs with npm, the archive with
packaging/install/install.sh. Nothing reaches past 127.0.0.1: every child gets dead loopback proxies
and a dead loopback npm registry, pip runs with --no-index, npm with --offline and an empty cache.
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from functools import partial
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens, so a stray request fails at once, locally

# This machine's Rust target, and the same platform in npm's and the wheel's words.
_MACHINE = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}.get(platform.machine().lower())
if sys.platform.startswith("linux"):
    TARGET = f"{_MACHINE}-unknown-linux-gnu"
    NPM_PLATFORM = "linux-" + {"x86_64": "x64", "aarch64": "arm64"}.get(_MACHINE, "?")
elif sys.platform == "darwin":
    TARGET = f"{_MACHINE}-apple-darwin"
    NPM_PLATFORM = "darwin-" + {"x86_64": "x64", "aarch64": "arm64"}.get(_MACHINE, "?")
else:
    TARGET = "x86_64-pc-windows-msvc"
    NPM_PLATFORM = "win32-x64"
WHEEL_TAG = {
    "x86_64-unknown-linux-gnu": "manylinux_2_17_x86_64.manylinux2014_x86_64",
    "aarch64-unknown-linux-gnu": "manylinux_2_17_aarch64.manylinux2014_aarch64",
    "x86_64-apple-darwin": "macosx_10_12_x86_64",
    "aarch64-apple-darwin": "macosx_11_0_arm64",
}.get(TARGET, "win_amd64")
WINDOWS = sys.platform == "win32"
ARCHIVE = f"codex-gateway-{TARGET}" + (".zip" if WINDOWS else ".tar.gz")
EXE = ".exe" if WINDOWS else ""
SCRIPTS = "Scripts" if WINDOWS else "bin"  # a venv's folder of executables


def dist_dir() -> Path:
    return Path(os.environ.get("CODEX_GATEWAY_DIST", REPO / "dist")).resolve()


@pytest.fixture(scope="session")
def dist() -> Path:
    """The dist folder; the tests that need it skip when it has no archive for this machine."""
    d = dist_dir()
    if not (d / ARCHIVE).is_file():
        pytest.skip(
            f"no {ARCHIVE} in {d}: run scripts/dist first (or point CODEX_GATEWAY_DIST at a dist folder; "
            "tests/packaging/make_dev_dist.py makes one from a debug build)"
        )
    return d


@pytest.fixture(scope="session")
def version(dist: Path) -> str:
    """The packages' version, read off this platform's wheel."""
    wheels = sorted((dist / "python").glob(f"codex_gateway-*-py3-none-{WHEEL_TAG}.whl"))
    if not wheels:
        pytest.skip(f"no wheel for {WHEEL_TAG} in {dist / 'python'}: scripts/dist makes the wheels and npm packages "
                    "unless given --no-packages")
    return wheels[0].name.split("-")[1]


def is_rust_dir(folder: str) -> bool:
    parts = Path(folder).parts
    return any(p in (".cargo", ".rustup", "rustup", "cargo") for p in parts) or "rustup" in folder


def clean_env(home: Path) -> dict[str, str]:
    """An environment with no Rust toolchain on PATH, a throwaway HOME, no login and no way off loopback."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "codex").mkdir(exist_ok=True)
    dropped = ("CODEX_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "CARGO", "RUSTUP", "RUSTC", "NPM_CONFIG_", "PIP_",
               "VIRTUAL_ENV", "PYTHONPATH", "NODE_OPTIONS", "NODE_PATH")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(dropped)}
    env["PATH"] = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not is_rust_dir(p))
    env.update(
        HOME=str(home),
        USERPROFILE=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        CODEX_HOME=str(home / "codex"),  # empty: no login is found
        CODEX_GATEWAY_DATA_DIR=str(home / "data"),
        HTTP_PROXY=DEAD, HTTPS_PROXY=DEAD, ALL_PROXY=DEAD,
        http_proxy=DEAD, https_proxy=DEAD, all_proxy=DEAD,
        NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
        PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_CACHE_DIR="1",
        npm_config_registry=DEAD + "/", npm_config_cache=str(home / "npm-cache"), npm_config_offline="true",
        npm_config_audit="false", npm_config_fund="false", npm_config_update_notifier="false",
        npm_config_userconfig=str(home / ".npmrc"),
    )
    assert shutil.which("cargo", path=env["PATH"]) is None, f"cargo is still on PATH: {env['PATH']}"
    assert shutil.which("rustc", path=env["PATH"]) is None, f"rustc is still on PATH: {env['PATH']}"
    return env


def command(name: str, env: dict[str, str]) -> str:
    """NAME as found on env's PATH (npm and npx are .cmd files on Windows, which need their full name)."""
    found = shutil.which(name, path=env["PATH"])
    assert found, f"{name} is not on PATH"
    return found


def base_python() -> str:
    """A real interpreter (not a pyenv shim, which needs the real HOME) to make fresh venvs with."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


class Gateway:
    """A started `... serve --port 0`; `url` once it printed its address."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path | None = None):
        self.log = Path(env["HOME"]) / f"gateway-{time.monotonic_ns()}.err"
        self._err = self.log.open("wb")
        # Its own process group: teardown reaches npx's and node's children too.
        group = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if WINDOWS else {"start_new_session": True}
        self.proc = subprocess.Popen(
            [command(argv[0], env), *argv[1:]], env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self._err, **group,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.url: str | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self._lines.put(raw.decode(errors="replace"))
        self._lines.put(None)

    def wait_healthy(self, timeout: float = 30.0) -> float:
        """Waits for the first 200 from /health; returns time.monotonic() of it."""
        deadline = time.monotonic() + timeout
        while self.url is None:
            try:
                line = self._lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line is None or time.monotonic() > deadline:
                raise AssertionError(f"the gateway did not say where it listens; exit {self.proc.poll()}; "
                                     f"stderr: {self.log.read_text(errors='replace')[-2000:]}")
            if line.startswith("codex-gateway listening on "):
                self.url = line.split(" on ", 1)[1].strip()
        host_port = self.url.removeprefix("http://")
        assert host_port.startswith("127.0.0.1:"), self.url
        while True:
            try:
                conn = http.client.HTTPConnection(host_port, timeout=2)
                conn.request("GET", "/health")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    return time.monotonic()
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"no 200 from {self.url}/health; exit {self.proc.poll()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if WINDOWS:
            # The tree under the process started (npx.cmd -> node -> codex-gateway.exe), by its id.
            subprocess.run(["taskkill", "/T", "/F", "/PID", str(self.proc.pid)], capture_output=True)
            self.proc.wait()
            self._err.close()
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of the group is left
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()
        self._err.close()


@pytest.fixture
def gateways():
    """Start gateways with `gateways(argv, env)`; all are stopped at teardown."""
    started: list[Gateway] = []

    def start(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> Gateway:
        g = Gateway(argv, env, cwd)
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def serve_folder():
    """`serve_folder(path)` -> base URL of a static HTTP server on 127.0.0.1 (a free port); stopped at teardown."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(folder: Path) -> str:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 120,
        check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([command(argv[0], env), *argv[1:]], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"{argv} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}")
    return result


_TIMINGS: dict[str, dict] = {}


@pytest.fixture(scope="session")
def timings(tmp_path_factory):
    """Install-to-serving seconds by way of installing; written to a JSON file at the end of the session."""
    yield _TIMINGS
    if _TIMINGS:
        path = tmp_path_factory.getbasetemp() / "install-to-serving.json"
        path.write_text(json.dumps(_TIMINGS, indent=2) + "\n")
        _TIMINGS["_file"] = str(path)


def pytest_terminal_summary(terminalreporter):
    if not _TIMINGS:
        return
    terminalreporter.section("install to serving (wall seconds, no Rust toolchain on PATH)")
    for way, t in _TIMINGS.items():
        if not way.startswith("_"):
            terminalreporter.write_line(f"{way:12} {t['seconds']:6.2f} s   {t.get('steps', '')}")
    if "_file" in _TIMINGS:
        terminalreporter.write_line(f"written to {_TIMINGS['_file']}")


# --- a dist folder of stand-in binaries, for the builders' and the launcher's own tests ------------------

FAKE_VERSION = "9.9.9"
ALL_TARGETS = [
    "x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu", "x86_64-apple-darwin", "aarch64-apple-darwin",
    "x86_64-pc-windows-msvc",
]
# A shell script standing in for the gateway: enough to see which arguments, signals and exit codes get through.
FAKE_BINARY = f"""#!/bin/sh
case "$1" in
  --version) echo "codex-gateway {FAKE_VERSION} (stand-in)" ;;
  args) shift; echo "args:$*" ;;
  exit) exit "$2" ;;
  die) kill -TERM $$ ;;
  wait)
    trap 'echo got-TERM; exit 7' TERM
    trap 'echo got-HUP; exit 8' HUP
    trap 'echo got-INT; exit 9' INT
    echo ready
    while :; do sleep 0.05; done ;;
esac
""".encode()


def write_fake_archive(dist: Path, target: str, binary: bytes = FAKE_BINARY) -> Path:
    import io
    import tarfile
    import zipfile

    top = f"codex-gateway-{target}"
    windows = "windows" in target
    exe = "codex-gateway.exe" if windows else "codex-gateway"
    files = [(exe, b"MZ stand-in" if windows else binary, 0o755), ("README.md", b"# readme\n", 0o644),
             ("LICENSE", b"MIT License (stand-in)\n", 0o644), ("codex-gateway.example.toml", b"# example\n", 0o644)]
    if windows:
        path = dist / f"{top}.zip"
        with zipfile.ZipFile(path, "w") as z:
            for name, data, mode in files:
                info = zipfile.ZipInfo(f"{top}/{name}")
                info.external_attr = mode << 16
                z.writestr(info, data)
    else:
        path = dist / f"{top}.tar.gz"
        with tarfile.open(path, "w:gz") as t:
            for name, data, mode in files:
                info = tarfile.TarInfo(f"{top}/{name}")
                info.size, info.mode = len(data), mode
                t.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="session")
def fake_dist(tmp_path_factory) -> Path:
    """A dist folder with stand-in archives for every target, run through both builders (--version 9.9.9)."""
    d = tmp_path_factory.mktemp("fake-dist")
    for target in ALL_TARGETS:
        write_fake_archive(d, target)
    for builder in ("packaging/python/build-wheels.py", "packaging/npm/build-packages.py"):
        subprocess.run([sys.executable, str(REPO / builder), str(d), "--version", FAKE_VERSION], check=True,
                       capture_output=True)
    return d
