#!/usr/bin/env python3
"""A dist folder by hand, for working on the packaging before scripts/dist has made a real one.

    tests/packaging/make_dev_dist.py BINARY OUT [--target T] [--no-builders]

Writes OUT/codex-gateway-T.tar.gz (T: x86_64-unknown-linux-gnu by default) in the layout
scripts/dist writes, with BINARY (e.g. target/debug/codex-gateway) as the gateway, then
runs the wheel and npm builders into OUT/python and OUT/npm, then SHA256SUMS last, as
scripts/dist does. Then: CODEX_GATEWAY_DIST=OUT python -m pytest tests/packaging
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 0
    tar.addfile(info, io.BytesIO(data))


def write_sums(dist: Path) -> None:
    lines = []
    for path in sorted(p for p in dist.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(dist).as_posix()}\n")
    (dist / "SHA256SUMS").write_text("".join(lines))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("binary", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--target", default="x86_64-unknown-linux-gnu")
    parser.add_argument("--no-builders", action="store_true")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    top = f"codex-gateway-{args.target}"
    for ext, mode in (("tar.gz", "w:gz"), ("tar.xz", "w:xz")):  # as packaging/archive.py packs them
        with tarfile.open(args.out / f"{top}.{ext}", mode) as tar:
            add(tar, f"{top}/codex-gateway", args.binary.read_bytes(), 0o755)
            add(tar, f"{top}/README.md", b"# codex-gateway (dev dist)\n", 0o644)
            add(tar, f"{top}/LICENSE", b"MIT License (dev dist)\n", 0o644)
            add(tar, f"{top}/codex-gateway.example.toml", b"# example\n", 0o644)
    if not args.no_builders:
        for builder in ("packaging/python/build-wheels.py", "packaging/npm/build-packages.py"):
            subprocess.run([sys.executable, str(REPO / builder), str(args.out)], check=True)
    write_sums(args.out)
    print(f"make_dev_dist: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
