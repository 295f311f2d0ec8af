"""From a local copy of the artifacts to a serving gateway in under 10 s, with no Rust toolchain on PATH.

For each way of installing, the wall time from the start of the install command to the first 200 from /health
of the gateway it installed. The seconds are printed (pytest -s), listed in the summary and written to
install-to-serving.json in pytest's temp folder; docs quote them.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

from pkgharness import ARCHIVE, EXE, NPM_PLATFORM, REPO, SCRIPTS, WHEEL_TAG, base_python, clean_env, run

GOAL_SECONDS = 10.0


def report(timings: dict, way: str, start: float, healthy: float, steps: dict[str, float]) -> None:
    total = healthy - start
    timings[way] = {"seconds": round(total, 2), "steps": {k: round(v, 2) for k, v in steps.items()}}
    print(f"\n{way}: {total:.2f} s from the install command to the first 200 from /health ({steps})")
    assert total < GOAL_SECONDS, f"{way} took {total:.2f} s (goal: under {GOAL_SECONDS} s)"


@pytest.mark.skipif(sys.platform == "win32", reason="install.sh is for Linux and macOS")
def test_install_sh_to_serving(dist: Path, serve_folder, gateways, tmp_path: Path, timings):
    env = clean_env(tmp_path / "home")
    target = tmp_path / "bin"
    env.update(CODEX_GATEWAY_DOWNLOAD_URL=serve_folder(dist), CODEX_GATEWAY_INSTALL_DIR=str(target))
    assert (dist / ARCHIVE).is_file()
    start = time.monotonic()
    run(["sh", str(REPO / "packaging" / "install" / "install.sh")], env)
    installed = time.monotonic()
    healthy = gateways([str(target / "codex-gateway"), "serve", "--port", "0"], env).wait_healthy()
    report(timings, "install.sh", start, healthy, {"install": installed - start, "serve": healthy - installed})


def test_wheel_to_serving(dist: Path, version: str, gateways, tmp_path: Path, timings):
    env = clean_env(tmp_path / "home")
    wheel = dist / "python" / f"codex_gateway-{version}-py3-none-{WHEEL_TAG}.whl"
    venv = tmp_path / "venv"
    scripts = venv / SCRIPTS
    start = time.monotonic()
    # What `pipx install` does: a venv of its own without a pip of its own (pipx keeps one shared pip), then the
    # wheel into it with that pip.
    run([base_python(), "-m", "venv", "--without-pip", str(venv)], env)
    made = time.monotonic()
    run([base_python(), "-m", "pip", "--python", str(scripts / "python"), "install", "--no-index", str(wheel)], env)
    installed = time.monotonic()
    healthy = gateways([str(scripts / f"codex-gateway{EXE}"), "serve", "--port", "0"], env).wait_healthy()
    report(timings, "wheel", start, healthy,
           {"venv": made - start, "pip install": installed - made, "serve": healthy - installed})


def test_npm_to_serving(dist: Path, version: str, gateways, tmp_path: Path, timings):
    env = clean_env(tmp_path / "home")
    project = tmp_path / "project"
    project.mkdir()
    (project / "package.json").write_text('{"name": "try-codex-gateway", "private": true}\n')
    tarballs = [dist / "npm" / f"codex-gateway-{NPM_PLATFORM}-{version}.tgz", dist / "npm" / f"codex-gateway-{version}.tgz"]
    start = time.monotonic()
    run(["npm", "install", "--offline", "--no-audit", "--no-fund", *map(str, tarballs)], env, cwd=project)
    installed = time.monotonic()
    healthy = gateways(["npx", "--no-install", "codex-gateway", "serve", "--port", "0"], env, cwd=project).wait_healthy()
    report(timings, "npm", start, healthy, {"npm install": installed - start, "serve": healthy - installed})


def _uv() -> str | None:
    """uv from scripts/dist's tools (.venv-dist, packaging/dist-requirements.txt), else one on PATH."""
    local = REPO / ".venv-dist" / SCRIPTS / f"uv{EXE}"
    return str(local) if local.is_file() else shutil.which("uv")


def test_uvx_to_serving(dist: Path, version: str, gateways, tmp_path: Path, timings):
    """The README's first line, `uvx codex-gateway serve`, with the wheel given as a local file and uv offline."""
    uv = _uv()
    if uv is None:
        pytest.skip("no uv (scripts/setup-test-deps puts it in .venv-dist)")
    env = clean_env(tmp_path / "home")
    env.update(UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_OFFLINE="1", UV_PYTHON_DOWNLOADS="never",
               UV_NO_CONFIG="1", UV_PYTHON=base_python())
    wheel = dist / "python" / f"codex_gateway-{version}-py3-none-{WHEEL_TAG}.whl"
    start = time.monotonic()
    healthy = gateways([uv, "tool", "run", "--from", str(wheel), "codex-gateway", "serve", "--port", "0"],
                       env).wait_healthy()
    report(timings, "uvx", start, healthy, {"uvx to healthy": healthy - start})
