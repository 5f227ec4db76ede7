"""Writes a small TUF repository with python-tuf's Metadata API (the reference implementation),
for Rollgate's interoperability test: OUT/metadata (consistent snapshots) and OUT/targets, one
target NAME holding DATA, with Rollgate's release facts under custom.rollgate.

usage: make_repo.py OUT NAME DATA RELEASE_JSON
"""
import hashlib
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from securesystemslib.signer import CryptoSigner
from tuf.api.metadata import Metadata, MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.serialization.json import JSONSerializer

out, name, data, release = Path(sys.argv[1]), sys.argv[2], sys.argv[3].encode(), json.loads(sys.argv[4])
meta, targets_dir = out / "metadata", out / "targets"
meta.mkdir(parents=True, exist_ok=True)
targets_dir.mkdir(exist_ok=True)


def expires(days):
    # Whole seconds: the format both sides agree on.
    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=days)


signers = {role: CryptoSigner.generate_ed25519() for role in ("root", "targets", "snapshot", "timestamp")}
serializer = JSONSerializer(compact=False)

root = Root(expires=expires(365), spec_version="1.0.0", consistent_snapshot=True)
for role, signer in signers.items():
    root.add_key(signer.public_key, role)
root_md = Metadata(root)
root_md.sign(signers["root"])
(meta / "1.root.json").write_bytes(root_md.to_bytes(serializer))

targets = Targets(expires=expires(90), spec_version="1.0.0")
target = TargetFile.from_data(name, data, ["sha256"])
target.unrecognized_fields["custom"] = {"rollgate": release}
targets.targets[target.path] = target
(targets_dir / f"{target.hashes['sha256']}.{target.path}").write_bytes(data)
targets_md = Metadata(targets)
targets_md.sign(signers["targets"])
targets_bytes = targets_md.to_bytes(serializer)
(meta / "1.targets.json").write_bytes(targets_bytes)

snapshot = Snapshot(expires=expires(7), spec_version="1.0.0")
snapshot.meta["targets.json"] = MetaFile(
    version=1, length=len(targets_bytes), hashes={"sha256": hashlib.sha256(targets_bytes).hexdigest()}
)
snapshot_md = Metadata(snapshot)
snapshot_md.sign(signers["snapshot"])
snapshot_bytes = snapshot_md.to_bytes(serializer)
(meta / "1.snapshot.json").write_bytes(snapshot_bytes)

timestamp = Timestamp(expires=expires(1), spec_version="1.0.0")
timestamp.snapshot_meta = MetaFile(
    version=1, length=len(snapshot_bytes), hashes={"sha256": hashlib.sha256(snapshot_bytes).hexdigest()}
)
timestamp_md = Metadata(timestamp)
timestamp_md.sign(signers["timestamp"])
(meta / "timestamp.json").write_bytes(timestamp_md.to_bytes(serializer))
print("written", out)
