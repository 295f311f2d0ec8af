#!/usr/bin/env python3
"""Turn the release archives of a dist folder into Python wheels (stdlib only).

    packaging/python/build-wheels.py DIST [--version V]

For every `codex-gateway-<target>.tar.gz` / `.zip` in DIST this writes
`DIST/python/codex_gateway-V-py3-none-<platform tag>.whl`. The binary goes into
`codex_gateway-V.data/scripts/`, so pip, uv and pipx put it straight onto PATH as an
executable (no Python entry-point wrapper between the shell and the gateway); the small
`codex_gateway` package beside it only finds that binary (`python -m codex_gateway`).

There is deliberately no sdist: the package is binary-only, like uv's and ruff's wheels.
An sdist would have to build the Rust workspace on the user's machine, which is exactly
what these wheels exist to avoid; a platform without a wheel is told to use another way
of installing instead of starting a surprise compile.

The wheels are reproducible: timestamps from SOURCE_DATE_EPOCH (else 1980), fixed modes, entries in a fixed
order.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import os
import re
import sys
import time
import zipfile
from pathlib import Path

# The archives' names and contents, shared with scripts/dist (packaging/archive.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from archive import archives_in, read_archive, workspace_version  # noqa: E402

NAME = "codex-gateway"
DIST_NAME = "codex_gateway"  # the name as wheel file names and .dist-info folders spell it

# Rust target triple -> wheel platform tag. Linux builds are linked against glibc 2.17,
# which is what manylinux_2_17 (alias manylinux2014) promises.
PLATFORM_TAGS = {
    "x86_64-unknown-linux-gnu": "manylinux_2_17_x86_64.manylinux2014_x86_64",
    "aarch64-unknown-linux-gnu": "manylinux_2_17_aarch64.manylinux2014_aarch64",
    "x86_64-apple-darwin": "macosx_10_12_x86_64",
    "aarch64-apple-darwin": "macosx_11_0_arm64",
    "x86_64-pc-windows-msvc": "win_amd64",
    "x86_64-pc-windows-gnu": "win_amd64",  # a cross build from Linux: the same platform
}

# Versions this builder accepts: the PEP 440 forms the workspace would use (1.2.3, 1.2.3rc1, ...).
VERSION_RE = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?$")

# Entry times: SOURCE_DATE_EPOCH (scripts/dist sets it to the commit's time), else 1980-01-01, the earliest a
# zip entry can carry; either way every build of the same inputs is byte-identical.
ZIP_EARLIEST = 315532800  # 1980-01-01T00:00:00Z


def zip_time() -> tuple[int, int, int, int, int, int]:
    stamp = max(int(os.environ.get("SOURCE_DATE_EPOCH", ZIP_EARLIEST)), ZIP_EARLIEST)
    return time.gmtime(stamp)[:6]


MODE_FILE = 0o100644
MODE_EXEC = 0o100755

SUMMARY = "The ChatGPT Codex backend as OpenAI, Anthropic, Gemini and Ollama APIs, in one binary"

DESCRIPTION = """\
# codex-gateway

Use the Codex models of your ChatGPT subscription from any AI client. `codex-gateway`
signs in with your ChatGPT login and serves the ChatGPT Codex backend as OpenAI Chat
Completions, OpenAI Responses, Anthropic Messages, Gemini and Ollama APIs.

This package installs the native `codex-gateway` binary; no Rust toolchain is needed.

```sh
pipx install codex-gateway        # or: uv tool install codex-gateway / pip install codex-gateway
codex-gateway serve               # serves http://127.0.0.1:8765
codex-gateway connect claude-code # prints a client's settings for this gateway
```

`python -m codex_gateway ARGS` runs the same binary.
"""

INIT_PY = '''\
"""The codex-gateway binary, installed by this wheel into the environment's scripts folder.

The package holds no gateway code: `find_codex_gateway_bin()` tells where the native
binary is, and `python -m codex_gateway ARGS` runs it.
"""

from __future__ import annotations

import os
import sys
import sysconfig

__all__ = ["find_codex_gateway_bin"]

_EXE = "codex-gateway" + (".exe" if sys.platform == "win32" else "")


def _candidate_dirs():
    # The scheme this interpreter installs into (a venv, the system, pipx's and uv's tool venvs).
    yield sysconfig.get_path("scripts")
    # `pip install --user`.
    user_scheme = sysconfig.get_preferred_scheme("user") if hasattr(sysconfig, "get_preferred_scheme") else (
        "nt_user" if os.name == "nt" else ("osx_framework_user" if sys.platform == "darwin" else "posix_user")
    )
    try:
        yield sysconfig.get_path("scripts", scheme=user_scheme)
    except KeyError:
        pass
    # `pip install --target DIR` puts scripts into DIR/bin; `--prefix P` into P/bin (P/Scripts on Windows),
    # with this package at P/lib/pythonX.Y/site-packages (P/Lib/site-packages on Windows).
    here = os.path.dirname(os.path.abspath(__file__))
    site = os.path.dirname(here)
    yield os.path.join(site, "bin")
    if os.name == "nt":
        yield os.path.join(os.path.dirname(os.path.dirname(site)), "Scripts")
    else:
        yield os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(site))), "bin")


def find_codex_gateway_bin() -> str:
    """The path of the installed codex-gateway binary; FileNotFoundError if it is not where pip puts it."""
    looked = []
    for folder in _candidate_dirs():
        if not folder or folder in looked:
            continue
        looked.append(folder)
        path = os.path.join(folder, _EXE)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"{_EXE} is not in any scripts folder of this installation (looked in: {', '.join(looked)}); "
        "reinstall the codex-gateway wheel for this platform"
    )
'''

MAIN_PY = '''\
"""`python -m codex_gateway ARGS`: run the installed codex-gateway binary with ARGS, exit with its code."""

from __future__ import annotations

import os
import sys

from codex_gateway import find_codex_gateway_bin


def main() -> None:
    binary = find_codex_gateway_bin()
    argv = [binary, *sys.argv[1:]]
    if sys.platform == "win32":
        # Windows has no exec that replaces the process: wait for the child and hand its code on.
        import subprocess

        child = subprocess.Popen(argv)
        while True:
            try:
                sys.exit(child.wait())
            except KeyboardInterrupt:
                # Ctrl+C reaches the child too; keep waiting so it can shut down cleanly.
                continue
    # Elsewhere the gateway takes this process's place: signals, exit code and stdio are its own.
    os.execv(binary, argv)


if __name__ == "__main__":
    main()
'''


def record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def wheel_entries(version: str, tag: str, files: dict[str, bytes], exe: str) -> list[tuple[str, bytes, int]]:
    """(name, content, unix mode) of every wheel entry, RECORD last."""
    dist_info = f"{DIST_NAME}-{version}.dist-info"
    metadata = "\n".join(
        [
            "Metadata-Version: 2.1",
            f"Name: {NAME}",
            f"Version: {version}",
            f"Summary: {SUMMARY}",
            "Home-page: https://github.com/codex-gateway/codex-gateway",
            "License: MIT",
            "Keywords: chatgpt,codex,openai,anthropic,gemini,ollama,gateway,proxy",
            "Classifier: Environment :: Console",
            "Classifier: License :: OSI Approved :: MIT License",
            "Classifier: Programming Language :: Rust",
            "Classifier: Topic :: Internet :: Proxy Servers",
            "Requires-Python: >=3.8",
            "Project-URL: Source, https://github.com/codex-gateway/codex-gateway",
            "Description-Content-Type: text/markdown",
            "",
            DESCRIPTION,
        ]
    )
    wheel = "\n".join(
        [
            "Wheel-Version: 1.0",
            f"Generator: codex-gateway packaging/python/build-wheels.py ({version})",
            "Root-Is-Purelib: false",
            *(f"Tag: py3-none-{t}" for t in tag.split(".")),
            "",
        ]
    )
    entries = [
        (f"{DIST_NAME}/__init__.py", INIT_PY.encode(), MODE_FILE),
        (f"{DIST_NAME}/__main__.py", MAIN_PY.encode(), MODE_FILE),
        (f"{DIST_NAME}-{version}.data/scripts/{exe}", files[exe], MODE_EXEC),
        (f"{dist_info}/METADATA", metadata.encode(), MODE_FILE),
        (f"{dist_info}/WHEEL", wheel.encode(), MODE_FILE),
    ]
    if "LICENSE" in files:
        entries.append((f"{dist_info}/LICENSE", files["LICENSE"], MODE_FILE))
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data, _ in entries:
        writer.writerow([name, record_hash(data), len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    entries.append((f"{dist_info}/RECORD", record.getvalue().encode(), MODE_FILE))
    return entries


def write_wheel(path: Path, entries: list[tuple[str, bytes, int]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    stamp = zip_time()
    with zipfile.ZipFile(tmp, "w") as z:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.create_system = 3  # unix, so installers read the mode below
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data, compresslevel=9)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build codex-gateway wheels from a dist folder's archives.")
    parser.add_argument("dist", type=Path, help="the dist folder scripts/dist wrote")
    parser.add_argument("--version", help="package version (default: the workspace version in Cargo.toml)")
    args = parser.parse_args(argv)
    version = args.version or workspace_version()
    if not VERSION_RE.match(version):
        parser.error(f"version {version!r} is not a plain PEP 440 version (like 1.2.3 or 1.2.3rc1)")

    archives = archives_in(args.dist)
    if not archives:
        print(f"build-wheels: no codex-gateway-<target> archives in {args.dist}", file=sys.stderr)
        return 1
    out = args.dist / "python"
    out.mkdir(exist_ok=True)
    made: dict[str, str] = {}
    for archive, target in archives:
        tag = PLATFORM_TAGS.get(target)
        if tag is None:
            print(f"build-wheels: no wheel platform tag for target {target} ({archive.name})", file=sys.stderr)
            return 1
        if tag in made:
            print(f"build-wheels: {archive.name} and {made[tag]} are both {tag}; keep one", file=sys.stderr)
            return 1
        made[tag] = archive.name
        exe = "codex-gateway.exe" if "windows" in target else "codex-gateway"
        files = read_archive(archive, target)
        if exe not in files:
            print(f"build-wheels: {archive.name} has no codex-gateway-{target}/{exe}", file=sys.stderr)
            return 1
        wheel = out / f"{DIST_NAME}-{version}-py3-none-{tag}.whl"
        write_wheel(wheel, wheel_entries(version, tag, files, exe))
        print(f"build-wheels: {wheel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
