"""Template protection on real faces: distances and rankings unchanged, keys unlinkable, keyring lifecycle.

The faces are ONNX-pipeline (dlib-resnet-v1, L2, threshold 0.6) embeddings of a few LFW people.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from safepassage.core.errors import FailedPrecondition
from safepassage.matcher import FlatIndex, Metric, exact_search
from safepassage.matcher.errors import InvalidVector, ProtectionKeyError
from safepassage.matcher.metric import normalise_rows
from safepassage.matcher.protection import TemplateTransform, TransformKeyring

THRESHOLD = 0.6  # dlib-resnet-v1's L2 match threshold
PEOPLE = (
    "Tony_Blair",
    "Silvio_Berlusconi",
    "David_Beckham",
    "Pervez_Musharraf",
    "Hugo_Chavez",
    "Salma_Hayek",
    "Lleyton_Hewitt",
    "Lindsay_Davenport",
)
IMAGES_EACH = 5
KEY_A, KEY_B = hashlib.sha256(b"deployment A").digest(), hashlib.sha256(b"deployment B").digest()


@dataclass(frozen=True)
class Faces:
    vectors: npt.NDArray[np.float32]  # (n, 128)
    person: npt.NDArray[np.int64]  # (n,) index into PEOPLE

    def split(self) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Gallery = all but each person's last image; probes = each person's last image."""
        last = np.r_[self.person[1:] != self.person[:-1], True]
        return ~last, last


@pytest.fixture(scope="module")
def faces(model_dir: Path, faces_dir: Path) -> Faces:
    from safepassage.face import ImageLimits, decode_image
    from safepassage.face.pipeline import PipelineSettings, load_pipeline

    pipeline = load_pipeline(PipelineSettings(model_dir=model_dir))
    vectors, person = [], []
    for number, name in enumerate(PEOPLE):
        for path in sorted((faces_dir / "lfw" / name).glob("*.jpg"))[:IMAGES_EACH]:
            image = decode_image(path.read_bytes(), ImageLimits())
            found = pipeline.process(image)
            assert found, f"no face found in {path.name}"
            height, width = image.shape[:2]
            # LFW images are centred on the named person; others may stand behind.
            face = min(
                found,
                key=lambda f: (f.box[0] + f.box[2] - width) ** 2 + (f.box[1] + f.box[3] - height) ** 2,
            )
            vectors.append(face.embedding)
            person.append(number)
    return Faces(np.asarray(vectors, dtype=np.float32), np.asarray(person, dtype=np.int64))


def _distances(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    distances: npt.NDArray[np.float64] = np.linalg.norm(a.astype(np.float64)[:, None] - b[None], axis=2)
    return distances


def _impostor_distances(faces: Faces) -> npt.NDArray[np.float64]:
    different = faces.person[:, None] != faces.person[None]
    distances: npt.NDArray[np.float64] = _distances(faces.vectors, faces.vectors)[different]
    return distances


# --- the transform ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dimension", [3, 128, 512])
def test_the_transform_is_orthonormal(dimension: int) -> None:
    q = TemplateTransform.from_key(KEY_A, 1, dimension).matrix
    np.testing.assert_allclose(q @ q.T, np.eye(dimension), rtol=0, atol=1e-12)
    np.testing.assert_allclose(q.T @ q, np.eye(dimension), rtol=0, atol=1e-12)
    assert not q.flags.writeable


def test_the_transform_is_determined_by_key_and_dimension() -> None:
    first, again = TemplateTransform.from_key(KEY_A, 1, 128), TemplateTransform.from_key(KEY_A, 1, 128)
    np.testing.assert_array_equal(first.matrix, again.matrix)
    assert first == again and first.fingerprint == again.fingerprint
    other_key = TemplateTransform.from_key(KEY_B, 1, 128)
    assert other_key.fingerprint != first.fingerprint
    assert np.abs(other_key.matrix - first.matrix).max() > 0.1
    # Another dimension is another matrix (not a block of this one), with the same key fingerprint.
    smaller = TemplateTransform.from_key(KEY_A, 1, 127)
    assert smaller.fingerprint == first.fingerprint
    assert np.abs(smaller.matrix - first.matrix[:127, :127]).max() > 0.1


def test_a_known_answer_pins_the_derivation() -> None:
    """A change of HKDF labels, seeding or Gaussian generation would orphan every protected gallery."""
    transform = TemplateTransform.from_key(bytes(range(32)), 1, 4)
    assert transform.fingerprint.hex() == "144de3b8c2b16517"
    expected = [
        [0.24118438020353228, -0.5740368547386725, 0.24661812116913875, 0.7426245932222915],
        [-0.4759722276508963, 0.6316663274769032, 0.14736769117448276, 0.593911485690239],
        [0.842052208920345, 0.5128425436968875, -0.07682231135619713, 0.14845516260731806],
        [0.07892154777530089, 0.09204273739997097, 0.95475682683435, -0.27154912152660965],
    ]
    # Not bit-exact across machines (libm and LAPACK rounding), far inside float32 precision.
    np.testing.assert_allclose(transform.matrix, expected, rtol=0, atol=1e-9)


def test_transforms_are_haar_distributed() -> None:
    """Over Haar-random O(d), trace(Q) has mean 0 and variance 1; QR without the sign fix fails this."""
    traces = np.array(
        [
            np.trace(TemplateTransform.from_key(hashlib.sha256(b"%d" % i).digest(), 1, 8).matrix)
            for i in range(600)
        ]
    )
    assert abs(traces.mean()) < 0.2
    assert abs(traces.var() - 1.0) < 0.3


def test_apply_and_invert_round_trip_and_keep_norms(faces: Faces) -> None:
    transform = TemplateTransform.from_key(KEY_A, 1, 128)
    protected = transform.apply(faces.vectors)
    assert protected.dtype == np.float32 and protected.shape == faces.vectors.shape
    np.testing.assert_allclose(
        np.linalg.norm(protected, axis=1), np.linalg.norm(faces.vectors, axis=1), rtol=1e-6
    )
    np.testing.assert_allclose(transform.invert(protected), faces.vectors, rtol=0, atol=1e-6)
    # The stored rows are nothing like the raw embeddings.
    assert np.abs(protected - faces.vectors).max() > 0.1


@pytest.mark.parametrize("metric", list(Metric))
def test_rankings_and_distances_are_unchanged(faces: Faces, metric: Metric) -> None:
    transform = TemplateTransform.from_key(KEY_A, 1, 128)
    raw = normalise_rows(faces.vectors) if metric is Metric.COSINE else faces.vectors
    in_gallery, probing = faces.split()
    gallery, probes = raw[in_gallery], raw[probing]
    ids = np.random.default_rng(3).choice(10_000, size=len(gallery), replace=False).astype(np.int64)
    k = len(gallery)  # the whole ranking, not just the top

    index = FlatIndex(128, metric)
    index.add(ids, transform.apply(gallery))
    protected = index.search(transform.apply(probes), k)
    reference = exact_search(gallery, ids, probes, k, metric)
    np.testing.assert_array_equal(protected.ids, reference.ids)
    np.testing.assert_allclose(protected.scores, reference.scores, rtol=0, atol=1e-5)

    plain = FlatIndex(128, metric)
    plain.add(ids, gallery)
    unprotected = plain.search(probes, k)
    np.testing.assert_array_equal(protected.ids, unprotected.ids)
    np.testing.assert_allclose(protected.scores, unprotected.scores, rtol=0, atol=1e-5)

    both = exact_search(transform.apply(gallery), ids, transform.apply(probes), k, metric)
    np.testing.assert_array_equal(both.ids, reference.ids)
    np.testing.assert_allclose(both.scores, reference.scores, rtol=0, atol=1e-5)

    # A 1:few restriction sees the same.
    subset = ids[::3]
    restricted = index.search(transform.apply(probes), 4, subset)
    np.testing.assert_array_equal(restricted.ids, exact_search(gallery[::3], subset, probes, 4, metric).ids)


def test_the_same_face_under_two_keys_does_not_match(faces: Faces) -> None:
    a, b = TemplateTransform.from_key(KEY_A, 1, 128), TemplateTransform.from_key(KEY_B, 1, 128)
    under_a, under_b = a.apply(faces.vectors), b.apply(faces.vectors)
    impostors = _impostor_distances(faces)
    same_face = np.linalg.norm(under_a.astype(np.float64) - under_b, axis=1)
    # Further apart than any two different people here, let alone the threshold.
    assert same_face.min() > THRESHOLD
    assert same_face.min() > impostors.max()
    assert (impostors > THRESHOLD).mean() > 0.95  # the impostors themselves are mostly rejected

    in_gallery, probing = faces.split()
    ids = np.arange(int(in_gallery.sum()), dtype=np.int64)
    gallery = FlatIndex(128, Metric.L2)
    gallery.add(ids, under_a[in_gallery])
    mated = faces.person[in_gallery]
    same_key = gallery.search(under_a[probing], 1)
    assert (mated[same_key.ids[:, 0]] == faces.person[probing]).sum() >= len(PEOPLE) - 1
    assert (same_key.scores[:, 0] <= THRESHOLD).sum() >= len(PEOPLE) - 1
    other_key = gallery.search(under_b[probing], int(in_gallery.sum()))
    assert (other_key.scores > THRESHOLD).all()  # no candidate at all, mated or not
    # Nor can a raw embedding (from a photo and the public model) find anyone in a protected gallery.
    assert (gallery.search(faces.vectors[probing], 1).scores > THRESHOLD).all()


def test_rekey_equals_the_new_key_applied_to_the_originals(faces: Faces) -> None:
    old, new = TemplateTransform.from_key(KEY_A, 1, 128), TemplateTransform.from_key(KEY_B, 2, 128)
    rekeyed = TemplateTransform.rekey(old.apply(faces.vectors), old, new)
    assert rekeyed.dtype == np.float32
    np.testing.assert_allclose(rekeyed, new.apply(faces.vectors), rtol=0, atol=1e-6)
    # Renewed templates do not match their old selves.
    assert (np.linalg.norm(rekeyed - old.apply(faces.vectors), axis=1) > THRESHOLD).all()
    with pytest.raises(ProtectionKeyError, match="dimension"):
        TemplateTransform.rekey(old.apply(faces.vectors), old, TemplateTransform.from_key(KEY_B, 2, 64))


def test_bad_shapes_keys_and_fingerprints_are_refused(faces: Faces) -> None:
    transform = TemplateTransform.from_key(KEY_A, 1, 128)
    for bad in (faces.vectors[:, :127], faces.vectors[0], faces.vectors[None]):
        with pytest.raises(InvalidVector):
            transform.apply(bad)
    with pytest.raises(InvalidVector):
        transform.invert(faces.vectors[:, :64])
    assert transform.apply(np.zeros((0, 128), np.float32)).shape == (0, 128)
    with pytest.raises(ProtectionKeyError):
        TemplateTransform.from_key(KEY_A[:16], 1, 128)
    with pytest.raises(InvalidVector):
        TemplateTransform.from_key(KEY_A, 1, 0)
    transform.check_fingerprint(TemplateTransform.from_key(KEY_A, 7, 64).fingerprint)
    with pytest.raises(ProtectionKeyError, match="not the key") as raised:
        transform.check_fingerprint(TemplateTransform.from_key(KEY_B, 1, 128).fingerprint)
    assert isinstance(raised.value, FailedPrecondition)


def test_repr_shows_neither_key_nor_matrix() -> None:
    transform = TemplateTransform.from_key(KEY_A, 1, 128)
    text = repr(transform)
    assert text == f"TemplateTransform(version=1, dimension=128, fingerprint={transform.fingerprint.hex()})"
    assert KEY_A.hex() not in text and base64.b64encode(KEY_A).decode() not in text


# --- the keyring -----------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _stored_keys(path: Path) -> list[str]:
    return list(json.loads(path.read_text())["keys"].values())


def test_a_keyring_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "template-keyring.json"
    keyring = TransformKeyring.create_if_missing(path)
    assert _mode(path) == 0o600
    assert (keyring.current(), keyring.versions(), keyring.destroyed_versions()) == (1, (1,), ())
    first = keyring.get(1, 128)
    assert keyring.get(1, 128) is first  # derived once
    again = TransformKeyring.create_if_missing(path)  # never overwrites
    assert again.fingerprint(1) == keyring.fingerprint(1) == first.fingerprint
    np.testing.assert_array_equal(TransformKeyring.open(path).get(1, 128).matrix, first.matrix)


def test_rotate_keeps_old_versions_until_destroyed(tmp_path: Path, faces: Faces) -> None:
    path = tmp_path / "template-keyring.json"
    keyring = TransformKeyring.create_if_missing(path)
    assert keyring.rotate() == 2
    assert _mode(path) == 0o600
    assert (keyring.current(), keyring.versions()) == (2, (1, 2))
    old, new = keyring.get(1, 128), keyring.get(2, 128)
    assert old.fingerprint != new.fingerprint
    rewritten = TemplateTransform.rekey(old.apply(faces.vectors), old, new)
    reopened = TransformKeyring.open(path)
    assert reopened.current() == 2
    np.testing.assert_allclose(rewritten, reopened.get(2, 128).apply(faces.vectors), rtol=0, atol=1e-6)


def test_destroyed_and_unknown_versions_raise(tmp_path: Path) -> None:
    path = tmp_path / "template-keyring.json"
    keyring = TransformKeyring.create_if_missing(path)
    keyring.get(1, 128)  # cached before destruction: must not survive it
    keyring.rotate()
    keyring.destroy(1)
    assert _mode(path) == 0o600
    assert len(_stored_keys(path)) == 1
    for attempt in (lambda: keyring.get(1, 128), lambda: keyring.fingerprint(1)):
        with pytest.raises(ProtectionKeyError, match="version 1 was destroyed"):
            attempt()
    with pytest.raises(ProtectionKeyError, match="unknown"):
        keyring.get(99, 128)
    with pytest.raises(ProtectionKeyError, match="current"):
        keyring.destroy(2)
    with pytest.raises(ProtectionKeyError, match="unknown"):
        keyring.destroy(99)
    keyring.destroy(1)  # idempotent
    reopened = TransformKeyring.open(path)
    assert (reopened.versions(), reopened.destroyed_versions()) == ((2,), (1,))
    with pytest.raises(ProtectionKeyError, match="destroyed"):
        reopened.get(1, 128)
    assert reopened.rotate() == 3  # a destroyed number is never reused


def test_missing_or_malformed_keyrings_raise_without_quoting_them(tmp_path: Path) -> None:
    path = tmp_path / "template-keyring.json"
    with pytest.raises(ProtectionKeyError, match="does not exist"):
        TransformKeyring.open(path)
    secret = base64.b64encode(KEY_A).decode()
    path.write_text(f'{{"keys": "{secret}"')
    path.chmod(0o600)  # a keyring others may read is refused before it is parsed
    with pytest.raises(ProtectionKeyError, match="not valid JSON") as raised:
        TransformKeyring.open(path)
    assert secret not in str(raised.value)
    document = {
        "format": "safepassage-template-keyring",
        "format_version": 1,
        "current_version": 1,
        "keys": {"1": secret, "2": base64.b64encode(KEY_B).decode()},
        "destroyed": [],
    }
    path.write_text(json.dumps(document))
    with pytest.raises(ProtectionKeyError, match="newest live version"):
        TransformKeyring.open(path)
    document.update(current_version=2, keys={"1": secret, "2": "c2hvcnQ="})
    path.write_text(json.dumps(document))
    with pytest.raises(ProtectionKeyError, match="32-byte") as raised:
        TransformKeyring.open(path)
    assert secret not in str(raised.value)


def test_keys_never_reach_repr_or_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "template-keyring.json"
    keyring = TransformKeyring.create_if_missing(path)
    keyring.rotate()
    transforms = [keyring.get(v, 128) for v in (1, 2)]
    secrets = _stored_keys(path)
    keyring.destroy(1)
    os.chmod(path, 0o640)
    with pytest.raises(ProtectionKeyError, match="chmod 600") as refused:  # others could read it
        TransformKeyring.open(path)
    shown = caplog.text + str(refused.value) + repr(keyring) + "".join(map(repr, transforms))
    for secret in secrets:
        assert secret not in shown
        assert base64.b64decode(secret).hex() not in shown
