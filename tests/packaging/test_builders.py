"""The two builders on a dist folder of stand-in archives for every target (no release build needed): names,
tags, metadata, modes, and the same bytes from the same inputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from pkgharness import ALL_TARGETS, FAKE_VERSION, REPO, write_fake_archive

WHEELS = REPO / "packaging" / "python" / "build-wheels.py"
PACKAGES = REPO / "packaging" / "npm" / "build-packages.py"

TAGS = [
    "manylinux_2_17_x86_64.manylinux2014_x86_64",
    "manylinux_2_17_aarch64.manylinux2014_aarch64",
    "macosx_10_12_x86_64",
    "macosx_11_0_arm64",
    "win_amd64",
]
NPM_PLATFORMS = {"linux-x64": ("linux", "x64"), "linux-arm64": ("linux", "arm64"), "darwin-x64": ("darwin", "x64"),
                 "darwin-arm64": ("darwin", "arm64"), "win32-x64": ("win32", "x64")}


def test_one_wheel_per_target_with_its_platform_tag(fake_dist: Path):
    names = sorted(p.name for p in (fake_dist / "python").iterdir())
    assert names == sorted(f"codex_gateway-{FAKE_VERSION}-py3-none-{t}.whl" for t in TAGS)


@pytest.mark.parametrize("tag", TAGS)
def test_each_wheel_holds_the_binary_as_an_executable_script_and_says_so_in_wheel_and_metadata(fake_dist: Path,
                                                                                              tag: str):
    wheel = fake_dist / "python" / f"codex_gateway-{FAKE_VERSION}-py3-none-{tag}.whl"
    exe = "codex-gateway.exe" if tag == "win_amd64" else "codex-gateway"
    info = f"codex_gateway-{FAKE_VERSION}.dist-info"
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        assert names[-1] == f"{info}/RECORD"
        assert f"codex_gateway-{FAKE_VERSION}.data/scripts/{exe}" in names
        assert {"codex_gateway/__init__.py", "codex_gateway/__main__.py", f"{info}/METADATA", f"{info}/WHEEL",
                f"{info}/LICENSE"} <= set(names)
        assert (z.getinfo(f"codex_gateway-{FAKE_VERSION}.data/scripts/{exe}").external_attr >> 16) & 0o777 == 0o755
        wheel_file = z.read(f"{info}/WHEEL").decode().splitlines()
        assert "Root-Is-Purelib: false" in wheel_file
        assert sorted(line for line in wheel_file if line.startswith("Tag: ")) == sorted(
            f"Tag: py3-none-{t}" for t in tag.split("."))
        metadata = z.read(f"{info}/METADATA").decode()
        headers, _, body = metadata.partition("\n\n")
        for line in ("Metadata-Version: 2.1", "Name: codex-gateway", f"Version: {FAKE_VERSION}", "License: MIT",
                     "Requires-Python: >=3.8"):
            assert line in headers.splitlines()
        assert any(h.startswith("Summary: ") for h in headers.splitlines())
        assert "codex-gateway serve" in body


def test_wheels_are_the_same_bytes_when_built_again(fake_dist: Path, tmp_path: Path):
    again = tmp_path / "dist"
    again.mkdir()
    for archive in fake_dist.glob("codex-gateway-*.*"):
        shutil.copy(archive, again)
    subprocess.run([sys.executable, str(WHEELS), str(again), "--version", FAKE_VERSION], check=True,
                   capture_output=True)
    for wheel in (fake_dist / "python").iterdir():
        assert (again / "python" / wheel.name).read_bytes() == wheel.read_bytes(), wheel.name


def test_two_archives_of_one_platform_are_refused(tmp_path: Path):
    write_fake_archive(tmp_path, "x86_64-pc-windows-msvc")
    write_fake_archive(tmp_path, "x86_64-pc-windows-gnu")
    for builder in (WHEELS, PACKAGES):
        result = subprocess.run([sys.executable, str(builder), str(tmp_path), "--version", FAKE_VERSION],
                                capture_output=True, text=True)
        assert result.returncode != 0
        assert "both" in result.stderr


def test_the_windows_gnu_archive_makes_the_windows_wheel_and_package(tmp_path: Path):
    write_fake_archive(tmp_path, "x86_64-pc-windows-gnu")
    for builder in (WHEELS, PACKAGES):
        subprocess.run([sys.executable, str(builder), str(tmp_path), "--version", FAKE_VERSION], check=True,
                       capture_output=True)
    assert (tmp_path / "python" / f"codex_gateway-{FAKE_VERSION}-py3-none-win_amd64.whl").is_file()
    assert (tmp_path / "npm" / f"codex-gateway-win32-x64-{FAKE_VERSION}.tgz").is_file()


def test_an_empty_dist_folder_is_an_error(tmp_path: Path):
    for builder in (WHEELS, PACKAGES):
        result = subprocess.run([sys.executable, str(builder), str(tmp_path)], capture_output=True, text=True)
        assert result.returncode != 0
        assert "no codex-gateway-<target> archives" in result.stderr


def package_json(tgz: Path) -> dict:
    with tarfile.open(tgz) as t:
        f = t.extractfile("package/package.json")
        assert f is not None
        return json.load(f)


def test_npm_tarballs_one_per_platform_and_the_main_one(fake_dist: Path):
    names = sorted(p.name for p in (fake_dist / "npm").iterdir())
    expected = [f"codex-gateway-{p}-{FAKE_VERSION}.tgz" for p in NPM_PLATFORMS] + [f"codex-gateway-{FAKE_VERSION}.tgz"]
    assert names == sorted(expected)
    assert len(ALL_TARGETS) == len(NPM_PLATFORMS)


@pytest.mark.parametrize("platform", sorted(NPM_PLATFORMS))
def test_each_platform_package_says_where_it_installs(fake_dist: Path, platform: str):
    pkg = package_json(fake_dist / "npm" / f"codex-gateway-{platform}-{FAKE_VERSION}.tgz")
    os_, cpu = NPM_PLATFORMS[platform]
    assert pkg["name"] == f"@codex-gateway/{platform}"
    assert pkg["version"] == FAKE_VERSION
    assert (pkg["os"], pkg["cpu"]) == ([os_], [cpu])
    assert pkg.get("libc") == (["glibc"] if os_ == "linux" else None)
    assert pkg["license"] == "MIT"
    assert "bin" not in pkg, "a platform package must not claim the codex-gateway command"
    exe = "codex-gateway.exe" if os_ == "win32" else "codex-gateway"
    with tarfile.open(fake_dist / "npm" / f"codex-gateway-{platform}-{FAKE_VERSION}.tgz") as t:
        assert t.getmember(f"package/bin/{exe}").mode & 0o777 == 0o755


def test_the_main_package_depends_on_every_platform_at_exactly_its_version(fake_dist: Path):
    pkg = package_json(fake_dist / "npm" / f"codex-gateway-{FAKE_VERSION}.tgz")
    assert pkg["name"] == "codex-gateway"
    assert pkg["optionalDependencies"] == {f"@codex-gateway/{p}": FAKE_VERSION for p in NPM_PLATFORMS}
    assert pkg["bin"] == {"codex-gateway": "bin/codex-gateway.js"}
    assert pkg["engines"] == {"node": ">=18"}
    assert pkg["license"] == "MIT"
    for field in ("description", "repository", "keywords", "homepage"):
        assert pkg[field]
    assert "dependencies" not in pkg
    with tarfile.open(fake_dist / "npm" / f"codex-gateway-{FAKE_VERSION}.tgz") as t:
        readme = t.extractfile("package/README.md")
        assert readme is not None and b"npx codex-gateway serve" in readme.read()


def test_a_version_the_registry_would_refuse_is_refused(tmp_path: Path):
    write_fake_archive(tmp_path, "x86_64-unknown-linux-gnu")
    for builder in (WHEELS, PACKAGES):
        result = subprocess.run([sys.executable, str(builder), str(tmp_path), "--version", "one.two"],
                                capture_output=True, text=True)
        assert result.returncode != 0
        assert "version" in result.stderr
