#!/usr/bin/env python3
"""Turn the release archives of a dist folder into npm packages (stdlib + the `npm` command).

    packaging/npm/build-packages.py DIST [--version V]

Writes `npm pack` tarballs into DIST/npm/:
- one platform package per archive, `@codex-gateway/<os>-<cpu>` (codex-gateway-<os>-<cpu>-V.tgz),
  holding `bin/codex-gateway[.exe]`, with `os`/`cpu` (and `libc` on Linux) so npm installs only
  the one that fits the machine;
- the main package `codex-gateway` (codex-gateway-V.tgz): the launcher bin/codex-gateway.js
  (packaging/npm/codex-gateway.js) and an optional dependency on every platform package at V.

Publishing order: the platform packages first, then the main one (it names them at exactly V).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# The archives' names and contents, shared with scripts/dist (packaging/archive.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from archive import archives_in, read_archive, workspace_version  # noqa: E402

HERE = Path(__file__).resolve().parent
SCOPE = "@codex-gateway"
REPOSITORY = {"type": "git", "url": "git+https://github.com/codex-gateway/codex-gateway.git"}
HOMEPAGE = "https://github.com/codex-gateway/codex-gateway"
KEYWORDS = ["chatgpt", "codex", "openai", "anthropic", "gemini", "ollama", "gateway", "proxy", "llm"]
DESCRIPTION = "The ChatGPT Codex backend as OpenAI, Anthropic, Gemini and Ollama APIs, in one binary"

# Rust target triple -> (npm os, npm cpu, libc or None). The Linux builds are linked against glibc 2.17.
PLATFORMS = {
    "x86_64-unknown-linux-gnu": ("linux", "x64", "glibc"),
    "aarch64-unknown-linux-gnu": ("linux", "arm64", "glibc"),
    "x86_64-apple-darwin": ("darwin", "x64", None),
    "aarch64-apple-darwin": ("darwin", "arm64", None),
    "x86_64-pc-windows-msvc": ("win32", "x64", None),
    "x86_64-pc-windows-gnu": ("win32", "x64", None),  # a cross build from Linux: the same platform
}
# Every platform package the main package depends on, whether or not this dist folder has its archive.
ALL_PLATFORMS = sorted({f"{os_}-{cpu}" for os_, cpu, _ in PLATFORMS.values()})

# npm versions are semver: 1.2.3, 1.2.3-rc.1
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")

MAIN_README = """\
# codex-gateway

Use the Codex models of your ChatGPT subscription from any AI client. `codex-gateway` signs in
with your ChatGPT login and serves the ChatGPT Codex backend as OpenAI Chat Completions, OpenAI
Responses, Anthropic Messages, Gemini and Ollama APIs. Streaming, tool calls, images, structured
output and reasoning all work.

```sh
npx codex-gateway serve                 # serves http://127.0.0.1:8765
npx codex-gateway connect claude-code   # prints a client's settings for this gateway
```

or `npm install -g codex-gateway`, then `codex-gateway serve`.

This package is a small launcher: the native binary comes in the platform package npm picks
for your machine (Linux x64/arm64 with glibc 2.17+, macOS x64/arm64, Windows x64), installed as
an optional dependency, so do not install with `--omit=optional`. `CODEX_GATEWAY_BINARY` makes
the launcher run another binary instead.

Documentation: https://github.com/codex-gateway/codex-gateway
"""

PLATFORM_README = """\
# {name}

The `codex-gateway` binary for {platform}. Install `codex-gateway` instead: it depends on this
package and runs the binary (`npx codex-gateway serve`).
"""


def common_fields(version: str) -> dict:
    return {
        "version": version,
        "description": DESCRIPTION,
        "license": "MIT",
        "homepage": HOMEPAGE,
        "repository": REPOSITORY,
        "bugs": {"url": f"{HOMEPAGE}/issues"},
        "keywords": KEYWORDS,
    }


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def npm_pack(folder: Path, out: Path) -> Path:
    result = subprocess.run(
        ["npm", "pack", "--json", "--ignore-scripts", "--pack-destination", str(out)],
        cwd=folder,
        check=True,
        capture_output=True,
        text=True,
    )
    return out / json.loads(result.stdout)[0]["filename"]


def stage_platform(root: Path, version: str, target: str, files: dict[str, bytes]) -> Path:
    os_, cpu, libc = PLATFORMS[target]
    name = f"{SCOPE}/{os_}-{cpu}"
    exe = "codex-gateway.exe" if os_ == "win32" else "codex-gateway"
    if exe not in files:
        raise SystemExit(f"build-packages: the {target} archive has no codex-gateway-{target}/{exe}")
    folder = root / f"{os_}-{cpu}"
    (folder / "bin").mkdir(parents=True)
    binary = folder / "bin" / exe
    binary.write_bytes(files[exe])
    binary.chmod(0o755)  # npm pack keeps the mode; npm install sets no bit on files that are not `bin`
    (folder / "README.md").write_text(PLATFORM_README.format(name=name, platform=f"{os_}-{cpu}"))
    if "LICENSE" in files:
        (folder / "LICENSE").write_bytes(files["LICENSE"])
    package = {
        "name": name,
        **common_fields(version),
        "description": f"The codex-gateway binary for {os_}-{cpu}; install codex-gateway instead",
        "os": [os_],
        "cpu": [cpu],
        **({"libc": [libc]} if libc else {}),
        "files": ["bin", "README.md", "LICENSE"],
        # Yarn PnP: unpack the package so the binary exists as a file on disk.
        "preferUnplugged": True,
    }
    write_json(folder / "package.json", package)
    return folder


def stage_main(root: Path, version: str, license_text: bytes | None) -> Path:
    folder = root / "main"
    (folder / "bin").mkdir(parents=True)
    launcher = folder / "bin" / "codex-gateway.js"
    shutil.copyfile(HERE / "codex-gateway.js", launcher)
    launcher.chmod(0o755)
    (folder / "README.md").write_text(MAIN_README)
    if license_text is not None:
        (folder / "LICENSE").write_bytes(license_text)
    package = {
        "name": "codex-gateway",
        **common_fields(version),
        "bin": {"codex-gateway": "bin/codex-gateway.js"},
        "files": ["bin", "README.md", "LICENSE"],
        "engines": {"node": ">=18"},
        "optionalDependencies": {f"{SCOPE}/{p}": version for p in ALL_PLATFORMS},
    }
    write_json(folder / "package.json", package)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build codex-gateway npm packages from a dist folder's archives.")
    parser.add_argument("dist", type=Path, help="the dist folder scripts/dist wrote")
    parser.add_argument("--version", help="package version (default: the workspace version in Cargo.toml)")
    args = parser.parse_args(argv)
    version = args.version or workspace_version()
    if not VERSION_RE.match(version):
        parser.error(f"version {version!r} is not a semver version (like 1.2.3 or 1.2.3-rc.1)")
    if shutil.which("npm") is None:
        print("build-packages: the npm command is needed (npm pack)", file=sys.stderr)
        return 1

    archives = archives_in(args.dist)
    if not archives:
        print(f"build-packages: no codex-gateway-<target> archives in {args.dist}", file=sys.stderr)
        return 1
    out = args.dist / "npm"
    out.mkdir(exist_ok=True)
    seen: dict[str, str] = {}
    license_text = None
    with tempfile.TemporaryDirectory(prefix="codex-gateway-npm-") as tmp:
        root = Path(tmp)
        folders = []
        for archive, target in archives:
            if target not in PLATFORMS:
                print(f"build-packages: no npm platform for target {target} ({archive.name})", file=sys.stderr)
                return 1
            os_, cpu, _ = PLATFORMS[target]
            if f"{os_}-{cpu}" in seen:
                print(f"build-packages: {archive.name} and {seen[f'{os_}-{cpu}']} are both {os_}-{cpu}; keep one",
                      file=sys.stderr)
                return 1
            seen[f"{os_}-{cpu}"] = archive.name
            files = read_archive(archive, target)
            license_text = license_text or files.get("LICENSE")
            folders.append(stage_platform(root, version, target, files))
        folders.append(stage_main(root, version, license_text))
        for folder in folders:
            print(f"build-packages: {npm_pack(folder, out.resolve())}")
    missing = sorted(set(ALL_PLATFORMS) - set(seen))
    if missing:
        print(f"build-packages: no archive for {', '.join(missing)}: the main package still names them", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
