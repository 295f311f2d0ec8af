"""The container image (packaging/image/Containerfile) built from the dist folder's root filesystem with podman and
run: its size, the non-root user, /health from the host, the health check the binary answers itself, and the
refusal to listen on 0.0.0.0 without a client key. Skipped, saying why, where no container engine runs (podman
needs runc and no raised limits on these machines: the test writes its own containers.conf)."""

from __future__ import annotations

import http.client
import json
import platform
import re
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from pkgharness import REPO

GOAL_MB = 35  # docs/deployment.md, "Release artifacts"
# The image of this machine's architecture is built and run; the other one is built and inspected.
ARCH = "arm64" if platform.machine().lower() in ("aarch64", "arm64") else "amd64"
OTHER = "amd64" if ARCH == "arm64" else "arm64"
TRIPLE = {"amd64": "x86_64-unknown-linux-gnu", "arm64": "aarch64-unknown-linux-gnu"}


def _version() -> str:
    text = (REPO / "Cargo.toml").read_text()
    match = re.search(r'\[workspace\.package\][^\[]*?version = "([^"]+)"', text, re.S)
    assert match, "no [workspace.package] version"
    return match.group(1)


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    """The podman command line, with this test's own configuration; skips when no engine can run a container."""
    if shutil.which("podman") is None:
        pytest.skip("no podman on PATH (scripts/setup-test-deps installs Debian's podman and runc)")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    # The machine refuses the raised RLIMIT_NOFILE podman asks for by default (shared/notes/containers.md).
    conf.write_text("[containers]\ndefault_ulimits = []\n")
    env = {"CONTAINERS_CONF": str(conf), "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    cmd = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]

    def run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc

    probe = run("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=60)
    if probe.returncode != 0:
        pytest.skip(f"podman does not run here: {probe.stderr.strip()[-300:]}")
    return run


def _build(podman, dist: Path, arch: str) -> str:
    """The image of `arch` from the dist folder's root filesystem, as the release workflow builds it; its tag."""
    tag = f"localhost/codex-gateway-test:{arch}-{uuid.uuid4().hex[:12]}"
    podman("build", "--format", "docker", "--platform", f"linux/{arch}", "--build-arg", f"TARGETARCH={arch}",
           "-f", str(REPO / "packaging/image/Containerfile"), "-t", tag, str(dist), timeout=300)
    return tag


@pytest.fixture(scope="module")
def image(dist: Path, podman) -> str:
    rootfs = dist / f"image-rootfs-{ARCH}.tar"
    if not rootfs.is_file():
        pytest.skip(f"no {rootfs.name} in {dist}: scripts/dist writes it (packaging/image/rootfs)")
    tag = _build(podman, dist, ARCH)
    yield tag
    podman("rmi", "-f", tag, check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_image_is_small_non_root_and_self_checking(image: str, podman) -> None:
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    size_mb = info["Size"] / 1e6
    print(f"\nimage {image}: {size_mb:.1f} MB (goal <= {GOAL_MB} MB)")
    assert size_mb <= GOAL_MB, f"the image is {size_mb:.1f} MB"
    config = info["Config"]
    assert config["User"] == "65532:65532", config
    assert config["Entrypoint"] == ["/usr/local/bin/codex-gateway"], config
    # podman keeps the health check beside Config (Docker inside it).
    health = (info.get("Healthcheck") or config.get("Healthcheck") or {}).get("Test", [])
    assert health == ["CMD", "/usr/local/bin/codex-gateway", "status", "--quiet"], health
    assert info["Architecture"] == ARCH
    # No shell: the health check and everything else are the binary's own.
    assert podman("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", "true", check=False).returncode != 0

    version = podman("run", "--rm", image, "--version").stdout
    assert version.startswith(f"codex-gateway {_version()}\n"), version
    assert f"target: {TRIPLE[ARCH]}" in version, version


def test_the_image_refuses_to_listen_without_a_key(image: str, podman) -> None:
    proc = podman("run", "--rm", image, check=False)
    assert proc.returncode != 0
    assert "no client API key is set" in proc.stderr, proc.stderr[-1000:]


def test_the_image_serves_and_reports_healthy(image: str, podman) -> None:
    port = _free_port()
    name = f"cgw-{uuid.uuid4().hex[:10]}"
    podman("run", "-d", "--name", name, "--network", "host", "--health-interval", "disable",
           "-e", "CODEX_GATEWAY_API_KEY=image-test-key", "-e", f"CODEX_GATEWAY_PORT={port}",
           "-e", "CODEX_GATEWAY_ALLOWED_HOSTS=127.0.0.1", image)
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/health")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        logs = podman("logs", name, check=False)
        assert status == 200, f"no 200 from /health: {logs.stdout[-1000:]} {logs.stderr[-1000:]}"
        # The image's own HEALTHCHECK, run once by hand (no systemd timer here).
        check = podman("healthcheck", "run", name, check=False)
        assert check.returncode == 0, f"healthcheck: {check.stdout} {check.stderr}"
        # The gateway's process runs as the image's user, not root.
        pid = podman("inspect", "--format", "{{.State.Pid}}", name).stdout.strip()
        uid_line = next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("Uid:"))
        assert uid_line.split()[1:] == ["65532"] * 4, uid_line
    finally:
        podman("rm", "-f", name, check=False)


def test_the_other_architectures_image_builds(dist: Path, podman, tmp_path: Path) -> None:
    rootfs = dist / f"image-rootfs-{OTHER}.tar"
    if not rootfs.is_file():
        pytest.skip(f"no {rootfs.name} in {dist}: `scripts/dist --linux` writes it")
    tag = _build(podman, dist, OTHER)
    try:
        info = json.loads(podman("image", "inspect", tag).stdout)[0]
        assert info["Architecture"] == OTHER
        size_mb = info["Size"] / 1e6
        print(f"\nimage {tag}: {size_mb:.1f} MB (goal <= {GOAL_MB} MB)")
        assert size_mb <= GOAL_MB
        # Runs only where the kernel hands the other architecture's binaries to qemu (binfmt_misc).
        emulator = {"arm64": "qemu-aarch64", "amd64": "qemu-x86_64"}[OTHER]
        if Path(f"/proc/sys/fs/binfmt_misc/{emulator}").exists():
            version = podman("run", "--rm", tag, "--version").stdout
            assert f"target: {TRIPLE[OTHER]}" in version, version
            print(f"{OTHER} image ran under qemu (binfmt_misc)")
        elif shutil.which(f"{emulator}-static"):
            # No binfmt_misc here: the image's own files run under qemu-user, the libraries from the image alone.
            root = tmp_path / "rootfs"
            try:
                root.mkdir()
                subprocess.run(["tar", "-xf", str(rootfs), "-C", str(root)], check=True, capture_output=True)
                proc = subprocess.run([f"{emulator}-static", "-L", str(root), str(root / "usr/local/bin/codex-gateway"),
                                       "--version"], capture_output=True, text=True, timeout=60)
                assert f"target: {TRIPLE[OTHER]}" in proc.stdout, proc.stdout + proc.stderr
                print(f"{OTHER} image's files ran under {emulator}-static with the image's own libraries")
            finally:
                shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"{OTHER} image built and inspected; not run (no {emulator} in binfmt_misc, no {emulator}-static)")
    finally:
        podman("rmi", "-f", tag, check=False)
