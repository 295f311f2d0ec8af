"""The wheel for this platform, installed with pip into a fresh venv, runs and serves."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from pkgharness import EXE, SCRIPTS, WHEEL_TAG, WINDOWS, base_python, clean_env, run


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def wheel(dist: Path, version: str) -> Path:
    return dist / "python" / f"codex_gateway-{version}-py3-none-{WHEEL_TAG}.whl"


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel: Path):
    home = tmp_path_factory.mktemp("wheel-home")
    env = clean_env(home)
    venv = home / "venv"
    run([base_python(), "-m", "venv", str(venv)], env)
    run([str(venv / SCRIPTS / "python"), "-m", "pip", "install", "--no-index", str(wheel)], env)
    env["PATH"] = f"{venv / SCRIPTS}{os.pathsep}{env['PATH']}"
    return venv, env


def test_the_wheels_record_lists_every_file_with_its_hash_and_size(wheel: Path, version: str):
    with zipfile.ZipFile(wheel) as z:
        names = [i.filename for i in z.infolist()]
        record_name = f"codex_gateway-{version}.dist-info/RECORD"
        rows = list(csv.reader(io.StringIO(z.read(record_name).decode())))
        assert sorted(r[0] for r in rows) == sorted(names)
        for path, digest, size in rows:
            if path == record_name:
                assert (digest, size) == ("", "")
                continue
            data = z.read(path)
            assert digest == record_hash(data), path
            assert int(size) == len(data), path
        script = z.getinfo(f"codex_gateway-{version}.data/scripts/codex-gateway{EXE}")
        assert stat.S_IMODE(script.external_attr >> 16) == 0o755
        wheel_file = z.read(f"codex_gateway-{version}.dist-info/WHEEL").decode()
        assert "Root-Is-Purelib: false" in wheel_file
        metadata = z.read(f"codex_gateway-{version}.dist-info/METADATA").decode()
        for line in ("Name: codex-gateway", f"Version: {version}", "License: MIT", "Requires-Python: >=3.8"):
            assert line in metadata.splitlines()


def test_pip_puts_an_executable_codex_gateway_on_the_venvs_path_that_runs(venv):
    venv_dir, env = venv
    binary = venv_dir / SCRIPTS / f"codex-gateway{EXE}"
    assert WINDOWS or binary.stat().st_mode & 0o111, "installed without the executable bit"
    out = run(["codex-gateway", "--version"], env).stdout
    assert out.startswith("codex-gateway "), out


def test_the_installed_binary_matches_the_installed_record(venv, version: str):
    venv_dir, _ = venv
    site = next(venv_dir.glob("Lib/site-packages" if WINDOWS else "lib/python*/site-packages"))
    rows = list(csv.reader((site / f"codex_gateway-{version}.dist-info" / "RECORD").open()))
    checked = 0
    for path, digest, size in rows:
        if digest:
            data = (site / path).resolve().read_bytes()
            assert record_hash(data) == digest, path
            assert len(data) == int(size), path
            checked += 1
    assert any(p.endswith(f"{SCRIPTS}/codex-gateway{EXE}") for p, _, _ in rows)
    assert checked >= 4


def test_python_m_codex_gateway_runs_the_binary_and_passes_its_exit_code_on(venv):
    venv_dir, env = venv
    python = str(venv_dir / SCRIPTS / "python")
    assert run([python, "-m", "codex_gateway", "--version"], env).stdout.startswith("codex-gateway ")
    direct = subprocess.run([str(venv_dir / SCRIPTS / f"codex-gateway{EXE}"), "--no-such-flag"], env=env,
                            capture_output=True)
    via_module = subprocess.run([python, "-m", "codex_gateway", "--no-such-flag"], env=env, capture_output=True)
    assert direct.returncode not in (0, None)
    assert via_module.returncode == direct.returncode
    found = run([python, "-c", "import codex_gateway; print(codex_gateway.find_codex_gateway_bin())"], env).stdout
    assert Path(found.strip()) == venv_dir / SCRIPTS / f"codex-gateway{EXE}"


def test_the_installed_gateway_serves_health(venv, gateways):
    _, env = venv
    gateways(["codex-gateway", "serve", "--port", "0"], env).wait_healthy()
