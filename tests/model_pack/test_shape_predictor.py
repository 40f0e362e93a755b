"""dlib's 5-point shape predictor -> npz: layout, every byte read, deterministic output, refusals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from safepassage.model_pack.dlib_serialization import Reader
from safepassage.model_pack.errors import ModelFormatError, ModelSourceMissing
from safepassage.model_pack.shape_predictor import ARRAY_NAMES, convert_shape_predictor, parse_shape_predictor

PREDICTOR = "shape_predictor_5_face_landmarks.dat"


def test_layout_of_the_5_point_model(npz_path: Path) -> None:
    with np.load(npz_path, allow_pickle=False) as archive:
        assert sorted(archive.files) == sorted(ARRAY_NAMES)
        arrays = {name: archive[name] for name in archive.files}
    expected = {
        "initial_shape": ((5, 2), np.float32),
        "split_idx1": ((15, 500, 15), np.int32),
        "split_idx2": ((15, 500, 15), np.int32),
        "split_thresh": ((15, 500, 15), np.float32),
        "leaf_values": ((15, 500, 16, 5, 2), np.float32),
        "anchor_idx": ((15, 800), np.int32),
        "deltas": ((15, 800, 2), np.float32),
    }
    for name, (shape, dtype) in expected.items():
        assert arrays[name].shape == shape, name
        assert arrays[name].dtype == dtype, name
    # box-normalised mean shape: eye corners above the nose, inside the detector box
    initial = arrays["initial_shape"]
    assert ((initial > 0) & (initial < 1)).all()
    assert initial[:4, 1].max() < initial[4, 1]
    assert arrays["split_idx1"].min() >= 0 and arrays["split_idx1"].max() < 800
    assert set(np.unique(arrays["anchor_idx"])) <= set(range(5))


def test_fast_parse_agrees_with_the_reader_primitives(dat_path: Path, npz_path: Path) -> None:
    """The bulk decoding reads the same values as dlib's format read item by item."""
    reader = Reader(dat_path.read_bytes(), PREDICTOR)
    reader.expect_integer(1, "version")
    initial = reader.matrix()
    assert reader.integer() == 15  # cascade levels
    assert reader.integer() == 500  # trees in the first level
    with np.load(npz_path, allow_pickle=False) as archive:
        np.testing.assert_array_equal(archive["initial_shape"], initial.reshape(5, 2).astype(np.float32))
        for tree in range(3):
            assert reader.integer() == 15
            for split in range(15):
                assert reader.integer() == archive["split_idx1"][0, tree, split]
                assert reader.integer() == archive["split_idx2"][0, tree, split]
                assert np.float32(reader.real()) == archive["split_thresh"][0, tree, split]
            assert reader.integer() == 16
            for leaf in range(16):
                values = reader.matrix()
                assert values.shape == (10, 1)
                np.testing.assert_array_equal(
                    archive["leaf_values"][0, tree, leaf].reshape(-1), values.reshape(-1).astype(np.float32)
                )


def test_conversion_is_deterministic(dat_path: Path, npz_path: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.npz"
    convert_shape_predictor(dat_path, again)
    assert hashlib.sha256(again.read_bytes()).hexdigest() == hashlib.sha256(npz_path.read_bytes()).hexdigest()


def test_reader_integers_matches_integer(dat_path: Path) -> None:
    data = dat_path.read_bytes()
    one_by_one = Reader(data, PREDICTOR)
    expected = [one_by_one.integer() for _ in range(5000)]
    bulk = Reader(data, PREDICTOR)
    assert bulk.integers(5000) == expected
    assert bulk.position == one_by_one.position
    position = bulk.position
    assert bulk.peek_integer() == one_by_one.integer()
    assert bulk.position == position  # peeking consumes nothing


def test_trailing_bytes_refused(dat_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="left unread"):
        parse_shape_predictor(dat_path.read_bytes() + b"\x01\x00", PREDICTOR)


@pytest.mark.parametrize("keep", [0, 1, 100, 4_000_000, 9_150_000])
def test_truncated_file_refused(dat_path: Path, keep: int) -> None:
    with pytest.raises(ModelFormatError):
        parse_shape_predictor(dat_path.read_bytes()[:keep], PREDICTOR)


def test_wrong_version_refused(dat_path: Path) -> None:
    data = bytearray(dat_path.read_bytes())
    assert data[:2] == b"\x01\x01"
    data[1] = 2
    with pytest.raises(ModelFormatError, match="version"):
        parse_shape_predictor(bytes(data), PREDICTOR)


def _first_tree_position(data: bytes) -> int:
    reader = Reader(data, PREDICTOR)
    reader.integer()  # version
    reader.matrix()  # initial shape
    reader.integer()  # levels
    reader.integer()  # trees of the first level
    return reader.position


def test_bad_control_byte_refused(dat_path: Path) -> None:
    data = bytearray(dat_path.read_bytes())
    # the first tree: split count (01 0f), then the control byte of its first idx1
    position = _first_tree_position(bytes(data)) + 2
    data[position] = 0x7F  # no dlib integer has bits 0x70 set or more than 8 bytes
    with pytest.raises(ModelFormatError, match="control byte"):
        parse_shape_predictor(bytes(data), PREDICTOR)


def test_tree_of_another_shape_refused(dat_path: Path) -> None:
    data = bytearray(dat_path.read_bytes())
    # the second tree of the first level starts with its split count, 15 (01 0f); make it 7
    reader = Reader(bytes(data), PREDICTOR)
    reader.position = _first_tree_position(bytes(data))
    reader.integers(1 + 4 * 15 + 1 + 16 * (2 + 20))
    assert data[reader.position : reader.position + 2] == b"\x01\x0f"
    data[reader.position + 1] = 7
    with pytest.raises(ModelFormatError, match="tree 1"):
        parse_shape_predictor(bytes(data), PREDICTOR)


def test_missing_source_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceMissing):
        convert_shape_predictor(tmp_path / "absent.dat", tmp_path / "out.npz")
