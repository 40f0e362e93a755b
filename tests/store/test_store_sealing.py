"""Sealing: AES-256-GCM round trip, and every way opening must fail loudly."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import numpy as np
import pytest

from safepassage import store
from safepassage.core import errors as core
from safepassage.store import InvalidKey, TemplateIntegrityError, TemplateSealer

D = 16
CATEGORIES = (
    core.InvalidInput,
    core.NotFound,
    core.AlreadyExists,
    core.TooLarge,
    core.FailedPrecondition,
    core.Unavailable,
    core.DataIntegrityError,
)


def _vector(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(D).astype(np.float32)


def test_round_trip_returns_the_same_float32_vector(sealer: TemplateSealer) -> None:
    vector = _vector()
    blob = sealer.seal(vector, gallery_id="g", template_id=7)
    opened = sealer.open(blob, gallery_id="g", template_id=7, dimension=D)
    assert opened.dtype == np.float32 and opened.shape == (D,)
    assert opened.tobytes() == vector.tobytes()
    opened[0] = 1.0  # writable: callers may normalise in place


def test_blob_format_and_fresh_nonces(sealer: TemplateSealer) -> None:
    vector = _vector()
    first = sealer.seal(vector, gallery_id="g", template_id=1)
    second = sealer.seal(vector, gallery_id="g", template_id=1)
    assert len(first) == 1 + 8 + 12 + 4 * D + 16
    assert first[0] == store.SEAL_VERSION == 0x01
    assert first[1:9] == sealer.fingerprint
    assert first[9:21] != second[9:21]  # random nonce per seal
    assert first != second
    assert vector.tobytes() not in first


def test_batch_seal_and_open_agree_with_single(sealer: TemplateSealer) -> None:
    matrix = np.stack([_vector(i) for i in range(5)])
    ids = [10, 11, 12, 13, 14]
    blobs = sealer.seal_batch(matrix, gallery_id="g", template_ids=ids)
    opened = sealer.open_batch(blobs, gallery_id="g", template_ids=ids, dimension=D)
    np.testing.assert_array_equal(opened, matrix)
    assert sealer.open(blobs[2], gallery_id="g", template_id=12, dimension=D).tobytes() == (
        matrix[2].tobytes()
    )


def test_wrong_key_is_reported_as_a_key_mismatch(sealer: TemplateSealer) -> None:
    blob = sealer.seal(_vector(), gallery_id="g", template_id=1)
    other = TemplateSealer(TemplateSealer.generate_key())
    with pytest.raises(TemplateIntegrityError, match="key does not match"):
        other.open(blob, gallery_id="g", template_id=1, dimension=D)


@pytest.mark.parametrize("position", [9, 15, 21, 30, -1])  # nonce, ciphertext, tag
def test_a_flipped_byte_fails_authentication(sealer: TemplateSealer, position: int) -> None:
    blob = bytearray(sealer.seal(_vector(), gallery_id="g", template_id=1))
    blob[position] ^= 0x01
    with pytest.raises(TemplateIntegrityError, match="authentication failed"):
        sealer.open(bytes(blob), gallery_id="g", template_id=1, dimension=D)


def test_a_blob_moved_to_another_row_or_gallery_fails(sealer: TemplateSealer) -> None:
    blob = sealer.seal(_vector(), gallery_id="g", template_id=1)
    with pytest.raises(TemplateIntegrityError, match="authentication failed"):
        sealer.open(blob, gallery_id="g", template_id=2, dimension=D)
    with pytest.raises(TemplateIntegrityError, match="authentication failed"):
        sealer.open(blob, gallery_id="h", template_id=1, dimension=D)


def test_unknown_version_truncation_and_wrong_length_fail(sealer: TemplateSealer) -> None:
    blob = sealer.seal(_vector(), gallery_id="g", template_id=1)
    with pytest.raises(TemplateIntegrityError, match="unknown sealing version 2"):
        sealer.open(b"\x02" + blob[1:], gallery_id="g", template_id=1, dimension=D)
    with pytest.raises(TemplateIntegrityError, match="truncated"):
        sealer.open(blob[:20], gallery_id="g", template_id=1, dimension=D)
    with pytest.raises(TemplateIntegrityError, match="does not fit dimension"):
        sealer.open(blob[:-4], gallery_id="g", template_id=1, dimension=D)
    with pytest.raises(TemplateIntegrityError, match="does not fit dimension"):
        sealer.open(blob, gallery_id="g", template_id=1, dimension=D + 1)
    with pytest.raises(TemplateIntegrityError):
        sealer.open(b"", gallery_id="g", template_id=1, dimension=D)


def test_seal_rejects_non_finite_and_malformed_vectors(sealer: TemplateSealer) -> None:
    for bad in (np.array([1.0, np.nan]), np.ones((2, 2)), np.array([]), np.array(["a"]), [1e39]):
        with pytest.raises(store.InvalidTemplate):
            sealer.seal(bad, gallery_id="g", template_id=1)


@pytest.mark.parametrize("bad", [b"", b"k" * 16, b"k" * 31, b"k" * 33, "k" * 32])
def test_a_key_of_the_wrong_size_or_type_is_rejected(bad: object) -> None:
    with pytest.raises(InvalidKey):
        TemplateSealer(bad)  # type: ignore[arg-type]


def test_generate_key_and_repr_never_show_the_key() -> None:
    key = TemplateSealer.generate_key()
    assert len(key) == 32 and key != TemplateSealer.generate_key()
    sealer = TemplateSealer(key)
    assert key.hex() not in repr(sealer) and sealer.fingerprint.hex() in repr(sealer)
    assert TemplateSealer(key).fingerprint == sealer.fingerprint


def test_load_key_reads_raw_and_base64_files(tmp_path: Path) -> None:
    key = os.urandom(32)
    raw = tmp_path / "raw.key"
    raw.write_bytes(key)
    text = tmp_path / "b64.key"
    text.write_text(base64.b64encode(key).decode() + "\n")
    raw.chmod(0o600)  # key files others may read are refused
    text.chmod(0o600)
    assert TemplateSealer.load_key(raw) == key
    assert TemplateSealer.load_key(text) == key
    assert TemplateSealer.from_key_file(text).fingerprint == TemplateSealer(key).fingerprint


def test_load_key_errors_never_quote_the_file(tmp_path: Path) -> None:
    secret = base64.b64encode(b"s" * 21).decode()  # valid base64, wrong length
    cases = {
        "short.key": secret,
        "garbage.key": "not base64 at all: " + secret,
        "big.key": "A" * 5000,
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_text(content)
        path.chmod(0o600)
        with pytest.raises(InvalidKey) as caught:
            TemplateSealer.load_key(path)
        assert secret not in str(caught.value) and "AAAA" not in str(caught.value)
    with pytest.raises(InvalidKey, match="cannot read the key file"):
        TemplateSealer.load_key(tmp_path / "missing.key")


def test_every_store_error_has_exactly_one_category() -> None:
    for name in store.__all__:
        value = getattr(store, name)
        if (
            isinstance(value, type)
            and issubclass(value, store.StoreError)
            and (value is not store.StoreError)
        ):
            assert sum(issubclass(value, c) for c in CATEGORIES) == 1, name
    assert issubclass(store.GalleryNotFound, core.NotFound)
    assert issubclass(store.DuplicateReference, core.AlreadyExists)
    assert issubclass(store.TemplateIntegrityError, core.DataIntegrityError)
    assert issubclass(store.InvalidKey, core.InvalidInput)
