#!/usr/bin/env python3
"""scripts/dist's archives and checksums, the same on Linux, macOS and Windows runners (BSD tar and macOS's xargs
lack the GNU options a shell version would need):

    archive.py pack FOLDER OUT.tar.gz|OUT.zip   one folder, entries sorted, owned by 0:0, dated SOURCE_DATE_EPOCH,
                                                so the same commit gives the same bytes; modes kept (0755 binary)
    archive.py sums DIR                         DIR/SHA256SUMS over every file below DIR, as `sha256sum -c` reads it
"""
import gzip
import hashlib
import io
import os
import sys
import tarfile
import time
import zipfile

EPOCH = max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800)  # zip cannot date before 1980


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
