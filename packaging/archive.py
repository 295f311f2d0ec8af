#!/usr/bin/env python3
"""scripts/dist's archives and checksums, the same on Linux, macOS and Windows runners (BSD tar and macOS's xargs
lack the GNU options a shell version would need):

    archive.py pack FOLDER OUT.tar.gz|OUT.zip   one folder, entries sorted, owned by 0:0, dated SOURCE_DATE_EPOCH,
                                                so the same commit gives the same bytes; modes kept (0755 binary);
                                                a .tar.gz gets its .tar.xz beside it (the same tar, xz -9e: ~30%
                                                smaller; install.sh takes it where `xz` is installed)
    archive.py sums DIR                         DIR/SHA256SUMS over every file below DIR, as `sha256sum -c` reads it

And, imported by the wheel and npm builders (packaging/python, packaging/npm), the reading side: which files of a
dist folder are archives, for which target, and what an archive holds.
"""
import gzip
import hashlib
import io
import lzma
import os
import re
import sys
import tarfile
import time
import zipfile

ARCHIVE_RE = re.compile(r"^codex-gateway-(?P<target>.+?)\.(?P<ext>tar\.gz|zip)$")
EPOCH = max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800)  # zip cannot date before 1980


def archives_in(dist):
    """(path, target) of every archive scripts/dist wrote into the folder `dist` (a pathlib.Path), by name."""
    found = sorted(p for p in dist.iterdir() if p.is_file() and ARCHIVE_RE.match(p.name))
    return [(p, ARCHIVE_RE.match(p.name)["target"]) for p in found]


def read_archive(path, target):
    """The files of the archive's single top folder `codex-gateway-<target>/`, by their name inside it."""
    top = f"codex-gateway-{target}/"
    files = {}
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.is_dir() and info.filename.startswith(top):
                    files[info.filename[len(top):]] = z.read(info)
    else:
        with tarfile.open(path, "r:*") as t:
            for member in t.getmembers():
                name = member.name.removeprefix("./")
                if member.isfile() and name.startswith(top):
                    f = t.extractfile(member)
                    if f is not None:
                        files[name[len(top):]] = f.read()
    return files


def workspace_version():
    """The workspace's version, `[workspace.package] version` in the repository's Cargo.toml."""
    cargo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Cargo.toml")
    with open(cargo, encoding="utf-8") as f:
        section = f.read().split("[workspace.package]", 1)[-1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"', section, re.M)
    if match is None:
        raise SystemExit(f"no [workspace.package] version in {cargo}")
    return match.group(1)


def files_under(folder):
    return sorted(os.path.join(d, f) for d, _, names in os.walk(folder) for f in names)


def pack(folder, out):
    base = os.path.dirname(os.path.abspath(folder))
    paths = files_under(folder)
    if out.endswith(".zip"):
        stamp = time.gmtime(EPOCH)[:6]
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            for path in paths:
                info = zipfile.ZipInfo(os.path.relpath(path, base).replace(os.sep, "/"), stamp)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (os.stat(path).st_mode & 0o777 | 0o100000) << 16
                with open(path, "rb") as f:
                    z.writestr(info, f.read())
        return
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({os.path.dirname(p) for p in paths} | {os.path.abspath(folder)})
        for path in sorted(dirs) + paths:
            info = tar.gettarinfo(path, os.path.relpath(path, base).replace(os.sep, "/"))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = EPOCH
            info.mode = 0o755 if info.isdir() or os.access(path, os.X_OK) else 0o644
            if info.isfile():
                with open(path, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    with open(out, "wb") as f, gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=EPOCH) as gz:
        gz.write(raw.getvalue())
    if out.endswith(".tar.gz"):
        # The same tar, xz-compressed: the smaller download for systems with `xz` (most; not minimal Debian, whose
        # xz-utils is not essential, hence the .tar.gz too). One block, no timestamps: the same bytes every time.
        with open(out[: -len(".gz")] + ".xz", "wb") as f:
            f.write(lzma.compress(raw.getvalue(), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64,
                                  preset=9 | lzma.PRESET_EXTREME))


def sums(folder):
    lines = []
    for path in files_under(folder):
        rel = os.path.relpath(path, folder).replace(os.sep, "/")
        if rel == "SHA256SUMS" or rel.startswith(".stage/"):
            continue
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        lines.append(f"{h.hexdigest()}  {rel}\n")
    with open(os.path.join(folder, "SHA256SUMS"), "w", newline="\n") as f:
        f.writelines(lines)
    return len(lines)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "pack":
        pack(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "sums":
        print(f"{sums(sys.argv[2])} files in SHA256SUMS", file=sys.stderr)
    else:
        sys.exit(__doc__)
