"""Two processes appending to one log file: no index is given twice and the tree stays consistent."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safepassage.audit import (
    TransparencyLog,
    audit,
    generate_signing_key,
    load_signing_key,
    verify_consistency,
)
from tests.audit_log.conftest import make_event
from tests.conftest import REPO

PER_PROCESS = 300

# Each process appends one event per transaction (the service's pattern),
# a small batch now and then, and signs a tree head every 50 events. The
# pause between appends stands for the time between requests: SQLite's busy
# handler polls rather than queues, so a process appending in a tight loop
# would take every turn and the other would only get in after it finished.
WORKER = """
import sys
import time
from pathlib import Path
from safepassage.audit import TransparencyLog, load_signing_key
from tests.audit_log.conftest import make_event

log_path, key_path, name, count = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
indices = []
with TransparencyLog.open(log_path, load_signing_key(key_path), busy_timeout=30) as log:
    # Start together, so the appends really interleave.
    (log_path.parent / f"{name}.ready").touch()
    while not (log_path.parent / "go").exists():
        time.sleep(0.005)
    i = 0
    while i < count:
        if i % 25 == 7:
            batch = [make_event(i + j, actor=f"kiosk:{name}") for j in range(3)]
            indices += log.append_many(batch)
            i += 3
        else:
            indices.append(log.append(make_event(i, actor=f"kiosk:{name}")))
            i += 1
        if i % 50 == 0:
            log.sign_tree_head()
        time.sleep(0.001)
print(" ".join(map(str, indices)))
"""


def test_two_processes_append_without_collisions(tmp_path: Path) -> None:
    key_path = tmp_path / "log_key.pem"
    generate_signing_key(key_path)
    log_path = tmp_path / "log.db"
    with TransparencyLog.open(log_path, load_signing_key(key_path)):
        pass  # create the file and bind the key before the race
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(log_path), str(key_path), name, str(PER_PROCESS)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("kiosk-a", "kiosk-b")
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"{name}.ready").exists() for name in ("kiosk-a", "kiosk-b")):
        assert time.monotonic() < deadline and all(w.poll() is None for w in workers)
        time.sleep(0.01)
    (tmp_path / "go").touch()
    returned = {}
    for name, worker in zip(("kiosk-a", "kiosk-b"), workers, strict=True):
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
        returned[name] = [int(x) for x in out.split()]

    a, b = returned["kiosk-a"], returned["kiosk-b"]
    assert len(a) >= PER_PROCESS and len(b) >= PER_PROCESS
    assert not set(a) & set(b), "two processes were given the same index"
    assert sorted(a + b) == list(range(len(a) + len(b)))
    assert a == sorted(a) and b == sorted(b)  # each process's own events keep their order

    key: Ed25519PrivateKey = load_signing_key(key_path)
    with TransparencyLog.open(log_path, key) as log:
        entries = log.entries(0, log.size())
        for name, indices in returned.items():
            assert all(entries[i].event().actor == f"kiosk:{name}" for i in indices)
        # The interleaving is real: neither process ran entirely before the other.
        assert min(b) < max(a) and min(a) < max(b)
        heads = log.tree_heads()
        assert len(heads) >= 2 * (PER_PROCESS // 50) - 2
        for older, newer in itertools.pairwise(heads):
            proof = log.consistency_proof(older.tree_size, newer.tree_size)
            verify_consistency(older.tree_size, newer.tree_size, proof, older.root_hash, newer.root_hash)
        log.export(tmp_path / "export")
    report = audit(tmp_path / "export", public_key=key.public_key())
    assert report.entries == len(a) + len(b) and report.unsigned_entries == 0
    assert (
        make_event(0, actor="kiosk:kiosk-a").to_leaf() in (tmp_path / "export" / "entries.jsonl").read_bytes()
    )
