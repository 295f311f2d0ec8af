"""packaging/install/install.sh against the dist folder served on 127.0.0.1: it installs a binary that runs, from
the .tar.xz where `xz` is installed and from the .tar.gz when asked, and refuses (non-zero, nothing installed, an
older binary left alone) a tampered archive or one SHA256SUMS does not list, in either format.

install.ps1 is not run here: PowerShell is not in Debian's archive and cannot be fetched on this machine, so
the release workflow's Windows runner is what runs it (same cases: install, tampered, missing entry).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from pkgharness import ARCHIVE, REPO, TARGET, clean_env, run, write_fake_archive

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="install.sh is for Linux and macOS; install.ps1 is "
                                "run by the release workflow's Windows step")

INSTALL_SH = REPO / "packaging" / "install" / "install.sh"
SHELLS = [s for s in ("sh", "dash", "bash") if shutil.which(s)]


ARCHIVE_XZ = ARCHIVE.removesuffix(".tar.gz") + ".tar.xz"
FORMATS = {"tar.gz": ARCHIVE, "tar.xz": ARCHIVE_XZ}


def install(base_url: str, install_dir: Path, home: Path, shell: str = "sh", *args: str, check: bool = True,
            fmt: str | None = None):
    env = clean_env(home)
    env.update(CODEX_GATEWAY_DOWNLOAD_URL=base_url, CODEX_GATEWAY_INSTALL_DIR=str(install_dir))
    if fmt is not None:
        env["CODEX_GATEWAY_ARCHIVE_FORMAT"] = fmt
    return run([shell, str(INSTALL_SH), *args], env, check=check), env


def copy_of_dist(dist: Path, to: Path) -> Path:
    """The archives and SHA256SUMS only: all install.sh fetches."""
    to.mkdir()
    for name in (*FORMATS.values(), "SHA256SUMS"):
        shutil.copy(dist / name, to / name)
    return to


@pytest.mark.parametrize("shell", SHELLS)
def test_install_sh_installs_a_binary_that_runs(dist: Path, serve_folder, tmp_path: Path, shell: str):
    base = serve_folder(dist)
    target = tmp_path / "new" / "bin"  # created by the script
    result, env = install(base, target, tmp_path / "home", shell)
    assert "Checksum verified" in result.stdout
    # xz is installed here: the smaller archive is the one taken.
    assert f"Downloading {ARCHIVE_XZ}" in result.stdout, result.stdout
    assert re.search(r"^Installed codex-gateway \S+ to \S+codex-gateway$", result.stdout, re.M), result.stdout
    assert "not on your PATH" in result.stdout
    assert f"{target}/codex-gateway serve" in result.stdout
    assert "connect claude-code" in result.stdout
    assert sorted(p.name for p in target.iterdir()) == ["codex-gateway"], "a temp file was left behind"
    assert run([str(target / "codex-gateway"), "--version"], env).stdout.startswith("codex-gateway ")


def test_install_sh_says_when_the_folder_is_on_path_and_replaces_an_older_binary(dist: Path, serve_folder,
                                                                                tmp_path: Path):
    target = tmp_path / "bin"
    target.mkdir()
    (target / "codex-gateway").write_text("old")
    env = clean_env(tmp_path / "home")
    env.update(CODEX_GATEWAY_DOWNLOAD_URL=serve_folder(dist), CODEX_GATEWAY_INSTALL_DIR=str(target),
               PATH=f"{target}:{env['PATH']}")
    result = run(["sh", str(INSTALL_SH)], env)
    assert f"{target} is on your PATH" in result.stdout
    assert "    codex-gateway serve" in result.stdout
    assert (target / "codex-gateway").read_bytes() != b"old"


def test_install_sh_installs_from_the_tar_gz_when_asked(dist: Path, serve_folder, tmp_path: Path):
    target = tmp_path / "bin"
    result, env = install(serve_folder(dist), target, tmp_path / "home", fmt="tar.gz")
    assert f"Downloading {ARCHIVE}" in result.stdout, result.stdout
    assert run([str(target / "codex-gateway"), "--version"], env).stdout.startswith("codex-gateway ")


def test_the_two_archives_hold_the_same_files(dist: Path):
    sys.path.insert(0, str(REPO / "packaging"))
    from archive import read_archive

    assert read_archive(dist / ARCHIVE, TARGET) == read_archive(dist / ARCHIVE_XZ, TARGET)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_install_sh_refuses_a_tampered_archive_and_installs_nothing(dist: Path, serve_folder, tmp_path: Path,
                                                                    fmt: str):
    copy = copy_of_dist(dist, tmp_path / "dist")
    name = FORMATS[fmt]
    data = bytearray((copy / name).read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    (copy / name).write_bytes(bytes(data))
    target = tmp_path / "bin"
    target.mkdir()
    (target / "codex-gateway").write_text("old")
    result, _ = install(serve_folder(copy), target, tmp_path / "home", check=False, fmt=fmt)
    assert result.returncode != 0
    assert "checksum mismatch" in result.stderr
    assert "nothing was installed" in result.stderr
    assert sorted(p.name for p in target.iterdir()) == ["codex-gateway"]
    assert (target / "codex-gateway").read_text() == "old"


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_install_sh_refuses_an_archive_sha256sums_does_not_list(dist: Path, serve_folder, tmp_path: Path, fmt: str):
    copy = copy_of_dist(dist, tmp_path / "dist")
    sums = copy / "SHA256SUMS"
    name = FORMATS[fmt]
    sums.write_text("".join(line for line in sums.read_text().splitlines(True) if name not in line))
    target = tmp_path / "bin"
    result, _ = install(serve_folder(copy), target, tmp_path / "home", check=False, fmt=fmt)
    assert result.returncode != 0
    assert f"SHA256SUMS has no entry for {name}" in result.stderr
    assert not target.exists()


def test_install_sh_refuses_when_sha256sums_is_missing(dist: Path, serve_folder, tmp_path: Path):
    copy = copy_of_dist(dist, tmp_path / "dist")
    (copy / "SHA256SUMS").unlink()
    target = tmp_path / "bin"
    result, _ = install(serve_folder(copy), target, tmp_path / "home", check=False)
    assert result.returncode != 0
    assert "could not download" in result.stderr and "SHA256SUMS" in result.stderr
    assert not target.exists()


def test_install_sh_version_picks_that_release_of_the_default_url(tmp_path: Path):
    # With no download URL set the script goes to GitHub; a dead proxy stops it there, and the message
    # shows which address it tried. Nothing leaves 127.0.0.1.
    env = clean_env(tmp_path / "home")
    env["CODEX_GATEWAY_INSTALL_DIR"] = str(tmp_path / "bin")
    result = run(["sh", str(INSTALL_SH), "--version", "0.9.1"], env, check=False)
    assert result.returncode != 0
    assert "/releases/download/v0.9.1" in result.stdout + result.stderr
    assert not (tmp_path / "bin").exists()


@pytest.mark.parametrize("shell", SHELLS)
def test_install_sh_is_valid_syntax(shell: str):
    run([shell, "-n", str(INSTALL_SH)], {"PATH": "/usr/bin:/bin"})


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="no shellcheck on PATH")
def test_install_sh_passes_shellcheck_as_posix_sh():
    run(["shellcheck", "-s", "sh", str(INSTALL_SH)], {"PATH": os.environ["PATH"]})


def test_install_sh_refuses_a_binary_that_does_not_run_here(serve_folder, tmp_path: Path):
    # A checksum-correct archive whose binary fails (as a glibc too old would make it): nothing installed.
    folder = tmp_path / "dist"
    folder.mkdir()
    archive = write_fake_archive(folder, TARGET, b"#!/bin/sh\necho 'cannot run here' >&2\nexit 3\n")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    (folder / "SHA256SUMS").write_text(f"{digest}  {archive.name}\n")
    target = tmp_path / "bin"
    result, _ = install(serve_folder(folder), target, tmp_path / "home", check=False, fmt="tar.gz")
    assert result.returncode != 0
    assert "does not run on this machine" in result.stderr and "cannot run here" in result.stderr
    assert list(target.iterdir()) == [], "the staged copy was left behind"
