"""100,000 entries: every inclusion proof and every consistency proof, generated and verified.

The timings are printed (run with ``-s``) and the whole is held to a minute:
proofs come from the cached complete subtrees, never from rehashing the log.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safepassage.audit import TransparencyLog, audit, verify_consistency, verify_inclusion, verify_tree_head
from tests.audit_log.conftest import make_event

N = 100_000


def test_every_proof_of_a_100k_log(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    timings: dict[str, float] = {}
    started = last = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal last
        now = time.perf_counter()
        timings[name] = now - last
        last = now

    events = [make_event(i, actor=f"officer:officer-{i % 97:04d}") for i in range(N)]
    lap("make 100k events")
    with TransparencyLog.open(tmp_path / "log.db", key) as log:
        assert log.append_many(events[: N // 2]) == list(range(N // 2))
        half = log.sign_tree_head()
        log.append_many(events[N // 2 :])
        head = log.sign_tree_head()
        lap("append_many (2 transactions) + 2 tree heads")
        verify_tree_head(head, key.public_key())

        hashes = [entry.leaf_hash for entry in log.entries(0, N)]
        lap("read back and rehash 100k entries")

        for index in range(N):
            verify_inclusion(hashes[index], index, N, log.inclusion_proof(index, N), head.root_hash)
        lap("inclusion: prove + verify every entry")

        roots = [log.root_hash(size) for size in range(N + 1)]
        lap("root at every size 0..N")
        assert roots[N // 2] == half.root_hash and roots[N] == head.root_hash

        for size in range(N + 1):
            verify_consistency(size, N, log.consistency_proof(size, N), roots[size], head.root_hash)
        lap("consistency: prove + verify every size m -> N")

        rng = random.Random(9162)
        for _ in range(20_000):
            first, second = sorted(rng.randrange(N + 1) for _ in range(2))
            proof = log.consistency_proof(first, second)
            verify_consistency(first, second, proof, roots[first], roots[second])
        lap("consistency: 20k random pairs m -> n")

        log.export(tmp_path / "export")
        lap("export")
    report = audit(tmp_path / "export", public_key=key.public_key())
    lap("offline audit of the export")
    assert report.entries == N and report.latest.tree_size == N

    total = time.perf_counter() - started
    print()
    for name, seconds in timings.items():
        print(f"  {name:<45} {seconds:6.2f} s")
    print(f"  {'total':<45} {total:6.2f} s")
    assert total < 60, timings
