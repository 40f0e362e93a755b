"""An acknowledged write survives kill -9 of the process that made it."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from safepassage.store import EMPTY_DIGEST, TemplateSealer, TemplateStore, gallery_digest
from tests.store.store_helpers import make_record, vector_for

REPO = Path(__file__).resolve().parents[2]

# Inserts batches and deletes forever, printing each acknowledgement only
# after the store call returned (i.e. after COMMIT).
CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from safepassage.store import TemplateSealer, TemplateStore
    from tests.store.store_helpers import vector_for

    store = TemplateStore.open(Path(sys.argv[1]), TemplateSealer.from_key_file(Path(sys.argv[2])))
    print("READY", flush=True)
    for batch in range(1_000_000):
        refs = [f"k{batch}-{j}" for j in range(5)]
        ids = store.templates.insert("g", [(ref, vector_for(ref)) for ref in refs])
        print("ACK", " ".join(f"{ref}={tid}" for ref, tid in zip(refs, ids)), flush=True)
        if batch % 4 == 3:
            victim = f"k{batch - 1}-2"
            print("DELETING", victim, flush=True)  # may commit without being acknowledged
            store.templates.delete("g", victim)
            print("DEL", victim, flush=True)
    """
)


@pytest.mark.timeout(60)
def test_acknowledged_templates_survive_sigkill(tmp_path: Path, key: bytes) -> None:
    db_path = tmp_path / "store" / "templates.db"
    key_path = tmp_path / "template.key"
    key_path.write_bytes(key)
    key_path.chmod(0o600)
    sealer = TemplateSealer(key)
    with TemplateStore.open(db_path, sealer) as setup:
        setup.galleries.create(make_record("g"))

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db_path), str(key_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    lines: list[str] = []
    try:
        while sum(line.startswith("ACK") for line in lines) < 40:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"child exited early: {child.stderr.read() if child.stderr else ''}")
            lines.append(line.strip())
    finally:
        os.kill(child.pid, signal.SIGKILL)  # mid-stream: it is inside its next transaction
        child.wait(timeout=10)
        # read() through the same text wrapper: readline() may have buffered lines already.
        rest = child.stdout.read()
        child.stdout.close()
        if child.stderr is not None:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    lines.extend(rest.split("\n"))  # acknowledgements already in the pipe count too

    acked: dict[str, int] = {}
    deleted: set[str] = set()
    maybe_deleted: set[str] = set()
    for line in lines:
        kind, _, payload = line.partition(" ")
        if kind == "ACK":
            acked.update((ref, int(tid)) for ref, tid in (p.split("=") for p in payload.split()))
        elif kind == "DELETING":
            maybe_deleted.add(payload)
        elif kind == "DEL":
            deleted.add(payload)
    assert len(acked) >= 200 and deleted

    with TemplateStore.open(db_path, sealer) as reopened:
        present = 0
        for ref, tid in acked.items():
            if ref in deleted:
                assert reopened.templates.template_ids("g", [ref]) == {}
                continue
            if ref in maybe_deleted and not reopened.templates.template_ids("g", [ref]):
                continue  # killed after that delete's COMMIT, before its acknowledgement
            got_id, vector = reopened.templates.get("g", ref)  # decrypts: intact
            assert got_id == tid
            assert vector.tobytes() == vector_for(ref).tobytes()
            present += 1

        state = reopened.galleries.state("g")
        assert state.size >= present  # an unacknowledged later commit may have landed too
        folded = EMPTY_DIGEST
        seen = 0
        for ids, vectors in reopened.templates.iterate("g"):  # verify=True checks size and digest
            folded = gallery_digest(sealer, ids, vectors, start=folded)
            seen += len(ids)
        assert (seen, folded) == (state.size, state.digest)
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
