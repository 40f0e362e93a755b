"""The gallery digest: its public definition, and that the store keeps it exact."""

from __future__ import annotations

import hashlib
import hmac
import random
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from safepassage.store import (
    EMPTY_DIGEST,
    TemplateSealer,
    TemplateStore,
    gallery_digest,
    template_digest,
    xor_digests,
)
from tests.store.store_helpers import vector_for

Items = Callable[..., list[tuple[str, npt.NDArray[np.float32]]]]


def _reference_definition(key: bytes, template_id: int, vector: npt.NDArray[np.float32]) -> bytes:
    """The documented definition, written out independently of safepassage.store.digest."""
    digest_key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"safepassage/store/template-digest/v1",
    ).derive(key)
    message = template_id.to_bytes(8, "little") + vector.astype("<f4").tobytes()
    return hmac.new(digest_key, message, hashlib.sha256).digest()


def test_template_digest_matches_its_published_definition(key: bytes) -> None:
    vector = vector_for("a")
    expected = _reference_definition(key, 42, vector)
    assert template_digest(key, 42, vector) == expected
    assert template_digest(TemplateSealer(key), 42, vector) == expected
    assert template_digest(key, 42, vector.astype(np.float64)) == expected
    assert template_digest(key, 43, vector) != expected
    assert template_digest(TemplateSealer.generate_key(), 42, vector) != expected


def test_gallery_digest_is_order_independent_and_xor_of_templates(sealer: TemplateSealer) -> None:
    ids = np.array([3, 1, 7], dtype=np.int64)
    vectors = np.stack([vector_for(str(i)) for i in ids])
    expected = xor_digests(template_digest(sealer, int(i), v) for i, v in zip(ids, vectors, strict=True))
    assert gallery_digest(sealer, ids, vectors) == expected
    order = [2, 0, 1]
    assert gallery_digest(sealer, ids[order], vectors[order]) == expected
    folded = gallery_digest(sealer, ids[:1], vectors[:1])
    assert gallery_digest(sealer, ids[1:], vectors[1:], start=folded) == expected
    assert gallery_digest(sealer, ids[:0], vectors[:0]) == EMPTY_DIGEST == bytes(32)


def test_state_digest_tracks_a_mixed_sequence_of_inserts_and_deletes(
    template_store: TemplateStore, gallery: str, items: Items
) -> None:
    rng = random.Random(7)
    live: dict[str, tuple[int, npt.NDArray[np.float32]]] = {}
    generation = 0
    for round_ in range(12):
        batch = items(f"b{round_}", rng.randint(1, 15))
        ids = template_store.templates.insert(gallery, batch)
        generation += 1
        live.update({ref: (tid, vec) for (ref, vec), tid in zip(batch, ids, strict=True)})
        for ref in rng.sample(sorted(live), k=min(len(live), rng.randint(0, 6))):
            assert template_store.templates.delete(gallery, ref) == live.pop(ref)[0]
            generation += 1
        state = template_store.galleries.state(gallery)
        expected = xor_digests(template_digest(template_store.sealer, t, v) for t, v in live.values())
        assert state.digest == expected
        assert (state.size, state.generation) == (len(live), generation)

    # Recomputed from what iteration yields, as the matcher does from its index.
    folded = EMPTY_DIGEST
    for ids_batch, vectors in template_store.templates.iterate(gallery, batch_size=7):
        folded = gallery_digest(template_store.sealer, ids_batch, vectors, start=folded)
    assert folded == template_store.galleries.state(gallery).digest
    ids_all = np.array([t for t, _ in live.values()], dtype=np.int64)
    vectors_all = np.stack([v for _, v in live.values()])
    assert template_store.content_digest(ids_all, vectors_all) == folded

    for ref in list(live):
        template_store.templates.delete(gallery, ref)
    assert template_store.galleries.state(gallery).digest == bytes(32)
    assert template_store.templates.count(gallery) == 0


def test_xor_digests_rejects_wrong_sizes() -> None:
    with pytest.raises(Exception, match="32 bytes"):
        xor_digests([b"short"])
