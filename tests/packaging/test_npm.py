"""The npm packages: installed offline from their tarballs, `npx codex-gateway` runs and serves; the launcher's
messages, override, exit codes and signals.

Offline, one `npm install --offline` of the two local tarballs (this platform's and the main one) is enough:
the main package's optional dependencies on the other four platform packages cannot be fetched (empty cache,
dead registry), and npm leaves a failed optional dependency out instead of failing; the one for this platform
is satisfied by the tarball given beside it.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from pkgharness import EXE, FAKE_VERSION, NPM_PLATFORM, WINDOWS, clean_env, run


def npm_install(project: Path, tarballs: list[Path], env: dict[str, str]) -> subprocess.CompletedProcess:
    project.mkdir(parents=True, exist_ok=True)
    (project / "package.json").write_text('{"name": "try-codex-gateway", "private": true}\n')
    return run(["npm", "install", "--offline", "--no-audit", "--no-fund", *map(str, tarballs)], env, cwd=project)


def tarballs(dist: Path, version: str) -> list[Path]:
    return [dist / "npm" / f"codex-gateway-{NPM_PLATFORM}-{version}.tgz", dist / "npm" / f"codex-gateway-{version}.tgz"]


# --- the real packages from the dist folder ---------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory, dist: Path, version: str):
    home = tmp_path_factory.mktemp("npm-home")
    env = clean_env(home)
    project = home / "project"
    npm_install(project, tarballs(dist, version), env)
    return project, env


def test_the_platform_packages_binary_is_installed_executable(installed):
    project, _ = installed
    exe = project / "node_modules" / "@codex-gateway" / NPM_PLATFORM / "bin" / f"codex-gateway{EXE}"
    assert WINDOWS or exe.stat().st_mode & stat.S_IXUSR


def test_npx_codex_gateway_finds_the_platform_package_and_runs_it(installed):
    project, env = installed
    out = run(["npx", "--no-install", "codex-gateway", "--version"], env, cwd=project).stdout
    assert out.startswith("codex-gateway "), out


def test_npx_codex_gateway_serve_answers_health(installed, gateways):
    project, env = installed
    gateways(["npx", "--no-install", "codex-gateway", "serve", "--port", "0"], env, cwd=project).wait_healthy()


def test_without_the_platform_package_the_launcher_names_the_platform_and_the_fix(tmp_path, dist: Path, version: str):
    env = clean_env(tmp_path / "home")
    project = tmp_path / "project"
    npm_install(project, tarballs(dist, version)[1:], env)
    assert not (project / "node_modules" / "@codex-gateway").exists()
    result = run(["npx", "--no-install", "codex-gateway", "--version"], env, cwd=project, check=False)
    assert result.returncode != 0
    assert NPM_PLATFORM in result.stderr
    assert f"@codex-gateway/{NPM_PLATFORM}" in result.stderr
    assert "--omit=optional" in result.stderr


# --- the launcher, with a stand-in binary (no dist folder needed) --------------------------------------------
# The stand-in is a shell script, and the signal cases are POSIX ones: these run on Linux and macOS.


@pytest.fixture(scope="module")
def fake_installed(tmp_path_factory, fake_dist: Path):
    if WINDOWS:
        pytest.skip("the stand-in binary is a shell script")
    home = tmp_path_factory.mktemp("npm-fake-home")
    env = clean_env(home)
    project = home / "project"
    npm_install(project, tarballs(fake_dist, FAKE_VERSION), env)
    return project, env


def launcher(project: Path) -> list[str]:
    return ["node", str(project / "node_modules" / "codex-gateway" / "bin" / "codex-gateway.js")]


def test_the_main_tarball_holds_the_launcher_and_the_platform_tarball_an_executable_binary(fake_dist: Path):
    with tarfile.open(fake_dist / "npm" / f"codex-gateway-{FAKE_VERSION}.tgz") as t:
        assert "package/bin/codex-gateway.js" in t.getnames()
    with tarfile.open(fake_dist / "npm" / f"codex-gateway-linux-x64-{FAKE_VERSION}.tgz") as t:
        assert t.getmember("package/bin/codex-gateway").mode & 0o777 == 0o755
    with tarfile.open(fake_dist / "npm" / f"codex-gateway-win32-x64-{FAKE_VERSION}.tgz") as t:
        assert "package/bin/codex-gateway.exe" in t.getnames()


def test_the_launcher_passes_arguments_and_the_exit_code_through(fake_installed):
    project, env = fake_installed
    assert run([*launcher(project), "args", "a b", "--c"], env).stdout == "args:a b --c\n"
    assert run([*launcher(project), "exit", "42"], env, check=False).returncode == 42


def test_the_launcher_dies_of_the_signal_the_binary_died_of(fake_installed):
    project, env = fake_installed
    assert run([*launcher(project), "die"], env, check=False).returncode == -signal.SIGTERM


@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGTERM, 7, "got-TERM"), (signal.SIGHUP, 8, "got-HUP"),
                                                   (signal.SIGINT, 9, "got-INT")])
def test_the_launcher_forwards_a_signal_to_the_binary(fake_installed, sig, code, said):
    project, env = fake_installed
    proc = subprocess.Popen([*launcher(project), "wait"], env=env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        os.kill(proc.pid, sig)  # the launcher alone: only forwarding reaches the binary
        assert proc.wait(timeout=10) == code
        assert proc.stdout.read() == f"{said}\n"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_codex_gateway_binary_overrides_the_platform_package(fake_installed, tmp_path):
    project, env = fake_installed
    other = tmp_path / "other-gateway"
    other.write_text("#!/bin/sh\necho other:$*\n")
    other.chmod(0o755)
    assert run([*launcher(project), "x"], {**env, "CODEX_GATEWAY_BINARY": str(other)}).stdout == "other:x\n"
