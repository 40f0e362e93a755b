"""No plaintext template ever reaches the disk, and erased templates leave it entirely."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from safepassage.store import TemplateStore
from tests.store.store_helpers import make_record

D = 128
N = 200


def _file_bytes(path: Path) -> dict[str, bytes]:
    """Raw bytes of the database and its WAL (whichever exist)."""
    found = {}
    for suffix in ("", "-wal"):
        candidate = Path(f"{path}{suffix}")
        if candidate.exists():
            found[candidate.name] = candidate.read_bytes()
    return found


def _needles(vectors: np.ndarray) -> list[bytes]:
    """Each whole vector, and 16-byte slices at several offsets of it."""
    needles = []
    for row in vectors.astype("<f4"):
        raw = row.tobytes()
        needles.append(raw)
        needles.extend(raw[offset : offset + 16] for offset in (0, 100, 256, len(raw) - 16))
    return needles


def _assert_absent(files: dict[str, bytes], needles: list[bytes]) -> None:
    for name, content in files.items():
        for needle in needles:
            assert needle not in content, f"plaintext found in {name}"


def test_no_plaintext_template_in_the_database_or_wal(template_store: TemplateStore) -> None:
    template_store.galleries.create(make_record("g", D))
    vectors = np.random.default_rng(1).standard_normal((N, D)).astype(np.float32)
    for start in range(0, N, 50):
        template_store.templates.insert("g", [(f"ref-{i:04d}", vectors[i]) for i in range(start, start + 50)])
    needles = _needles(vectors)

    before = _file_bytes(template_store.path)
    assert len(before[template_store.path.name + "-wal"]) > N * D * 4  # the WAL holds the inserts
    # The search itself works: reference ids are stored in the clear, and are found.
    assert any(b"ref-0123" in content for content in before.values())
    _assert_absent(before, needles)

    assert template_store.checkpoint()
    after = _file_bytes(template_store.path)
    assert b"ref-0123" in after[template_store.path.name]
    _assert_absent(after, needles)


def test_deleted_gallery_leaves_no_sealed_blob_behind(template_store: TemplateStore) -> None:
    for name in ("gone", "kept"):
        template_store.galleries.create(make_record(name, D))
        vectors = np.random.default_rng(len(name)).standard_normal((N, D)).astype(np.float32)
        template_store.templates.insert(name, [(f"{name}-{i:04d}", vectors[i]) for i in range(N)])
    template_store.checkpoint()

    with sqlite3.connect(f"file:{template_store.path}?mode=ro", uri=True) as raw:
        blobs = {
            gallery: [
                bytes(row[0])
                for row in raw.execute(
                    "SELECT sealed FROM templates JOIN galleries USING (gallery_pk) WHERE gallery_id = ?",
                    (gallery,),
                )
            ]
            for gallery in ("gone", "kept")
        }
    raw.close()
    assert len(blobs["gone"]) == N and len(blobs["kept"]) == N
    # Whole blobs and 32-byte slices of their ciphertexts.
    gone = [b for blob in blobs["gone"] for b in (blob, blob[40:72])]
    files = b"".join(_file_bytes(template_store.path).values())
    assert all(needle in files for needle in gone)  # present before the delete

    assert template_store.galleries.delete("gone") == N
    files = b"".join(_file_bytes(template_store.path).values())
    assert not any(needle in files for needle in gone)
    assert not any(f"gone-{i:04d}".encode() in files for i in range(N))
    assert all(blob in files for blob in blobs["kept"])  # only the deleted gallery was erased


def test_deleted_template_leaves_no_sealed_blob_behind(template_store: TemplateStore) -> None:
    template_store.galleries.create(make_record("g", D))
    vectors = np.random.default_rng(3).standard_normal((20, D)).astype(np.float32)
    ids = template_store.templates.insert("g", [(f"r{i}", vectors[i]) for i in range(20)])
    template_store.checkpoint()
    with sqlite3.connect(f"file:{template_store.path}?mode=ro", uri=True) as raw:
        blob = bytes(
            raw.execute("SELECT sealed FROM templates WHERE template_id = ?", (ids[5],)).fetchone()[0]
        )
    raw.close()
    assert blob in b"".join(_file_bytes(template_store.path).values())
    template_store.templates.delete("g", "r5")
    files = b"".join(_file_bytes(template_store.path).values())
    assert blob not in files and blob[40:72] not in files
