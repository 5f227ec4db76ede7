"""Verifies a TUF repository served over HTTP with python-tuf's ngclient (the reference client)
and downloads one target, for Rollgate's interoperability test. Prints the target's custom
metadata as JSON; exits non-zero on any failure.

usage: verify_repo.py BASE_URL TRUSTED_ROOT NAME
"""
import json
import sys
import tempfile
from pathlib import Path

from tuf.ngclient import Updater

base, trusted_root, name = sys.argv[1].rstrip("/"), Path(sys.argv[2]), sys.argv[3]
updater = Updater(
    metadata_dir=tempfile.mkdtemp(),
    metadata_base_url=f"{base}/metadata/",
    target_dir=tempfile.mkdtemp(),
    target_base_url=f"{base}/targets/",
    bootstrap=trusted_root.read_bytes(),
)
updater.refresh()
info = updater.get_targetinfo(name)
if info is None:
    sys.exit(f"{name} is not listed")
path = updater.download_target(info)  # checks length and hashes
print(json.dumps({"custom": info.custom, "length": info.length, "bytes": Path(path).read_bytes().decode()}))
