#!/usr/bin/env python3
"""Zips one folder for the Windows archive (scripts/dist): entries sorted, times fixed to SOURCE_DATE_EPOCH, so
the same commit gives the same bytes. Usage: zip-folder.py FOLDER OUT.zip (run from the folder's parent)."""
import os
import sys
import time
import zipfile

folder, out = sys.argv[1], sys.argv[2]
stamp = time.gmtime(max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800))[:6]
paths = sorted(os.path.join(d, f) for d, _, files in os.walk(folder) for f in files)
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for path in paths:
        info = zipfile.ZipInfo(path.replace(os.sep, "/"), stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = (os.stat(path).st_mode & 0o777 | 0o100000) << 16
        with open(path, "rb") as f:
            z.writestr(info, f.read())
