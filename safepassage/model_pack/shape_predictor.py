"""Conversion of dlib's 5-point shape predictor into plain numpy arrays.

dlib's ``shape_predictor_5_face_landmarks.dat`` (dlib/image_processing/shape_predictor.h,
``serialize(const shape_predictor&)``) holds, as dlib integers and floats only:

    int version (1)
    matrix<float,0,1> initial_shape            2*parts values, x0 y0 x1 y1 ..., box-normalised
    vector<vector<regression_tree>> forests    levels x trees; a tree is
        vector<split_feature> splits           each: ulong idx1, ulong idx2, float thresh
        vector<matrix<float,0,1>> leaf_values  splits+1 leaves of 2*parts values
    vector<vector<ulong>> anchor_idx           levels x pixels: landmark each feature pixel hangs on
    vector<vector<vector<float,2>>> deltas     levels x pixels x (dx, dy), box-normalised

The converter parses it in pure Python (every byte accounted for) and writes an
uncompressed ``.npz`` whose bytes depend on the input only (fixed zip timestamps),
so its sha256 can be pinned in a manifest. Arrays, the layout the pipeline's landmarker
(`safepassage.face.landmarks`) reads:

    initial_shape  float32 (parts, 2)
    split_idx1     int32   (levels, trees, splits)    feature pixel indices, < pixels
    split_idx2     int32   (levels, trees, splits)
    split_thresh   float32 (levels, trees, splits)
    leaf_values    float32 (levels, trees, leaves, parts, 2)
    anchor_idx     int32   (levels, pixels)           < parts
    deltas         float32 (levels, pixels, 2)

For the 5-point model: parts 5, levels 15, trees 500, splits 15, leaves 16, pixels 800.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from safepassage.core import atomic_file
from safepassage.model_pack.dlib_serialization import Reader
from safepassage.model_pack.errors import ModelFormatError, ModelSourceMissing

ARRAY_NAMES = (
    "initial_shape",
    "split_idx1",
    "split_idx2",
    "split_thresh",
    "leaf_values",
    "anchor_idx",
    "deltas",
)

_SPECIAL_EXPONENTS = {32000: np.inf, 32001: -np.inf, 32002: np.nan}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_MAX_COUNT = 1 << 24


def convert_shape_predictor(dat_path: Path, npz_path: Path) -> None:
    """Parse dlib's shape predictor at `dat_path` and write its arrays to `npz_path`."""
    try:
        data = dat_path.read_bytes()
    except FileNotFoundError as error:
        raise ModelSourceMissing(f"{dat_path}: shape predictor file not found") from error
    arrays = parse_shape_predictor(data, dat_path.name)
    write_npz(npz_path, arrays)


def parse_shape_predictor(data: bytes, name: str) -> dict[str, npt.NDArray[np.generic]]:
    """The arrays of a serialized dlib shape_predictor (see the module docstring)."""
    reader = Reader(data, name)
    reader.expect_integer(1, "shape_predictor version")
    initial = reader.matrix()
    if initial.shape[1] != 1 or initial.shape[0] == 0 or initial.shape[0] % 2:
        raise reader.fail(f"initial shape is {initial.shape[0]}x{initial.shape[1]}, expected 2*parts x 1")
    parts = initial.shape[0] // 2
    levels = _count(reader, "number of cascade levels")
    forests = [_forest(reader, parts) for _ in range(levels)]
    reader.expect_integer(levels, "anchor_idx levels")
    anchors = [
        np.array(reader.integers(_count(reader, "anchor count")), dtype=np.int64) for _ in range(levels)
    ]
    reader.expect_integer(levels, "deltas levels")
    deltas = [_deltas(reader) for _ in range(levels)]
    reader.expect_end()

    pixels = anchors[0].size if levels else 0
    if any(a.size != pixels for a in anchors) or any(d.shape[0] != pixels for d in deltas):
        raise ModelFormatError(f"{name}: feature pixel counts differ between cascade levels")
    shapes = {f[0].shape[1:] for f in forests}
    if len(shapes) > 1:
        raise ModelFormatError(f"{name}: forest sizes differ between cascade levels: {sorted(shapes)}")
    arrays: dict[str, npt.NDArray[np.generic]] = {
        "initial_shape": initial.astype(np.float32).reshape(parts, 2),
        "split_idx1": np.stack([f[0] for f in forests]).astype(np.int32),
        "split_idx2": np.stack([f[1] for f in forests]).astype(np.int32),
        "split_thresh": np.stack([f[2] for f in forests]),
        "leaf_values": np.stack([f[3] for f in forests]),
        "anchor_idx": np.stack(anchors).astype(np.int32),
        "deltas": np.stack(deltas),
    }
    _validate(arrays, pixels, parts, name)
    return arrays


def write_npz(path: Path, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
    """An uncompressed .npz (what np.savez writes) with fixed timestamps: same arrays, same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        atomic_file.replacing(path, mode=0o644) as out,
        zipfile.ZipFile(out, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive,
    ):
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            with archive.open(info, mode="w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(arrays[key]), allow_pickle=False)


def _forest(
    reader: Reader, parts: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """One cascade level: all its trees, decoded as one run of integers then reshaped."""
    trees = _count(reader, "number of trees")
    if trees == 0:
        raise reader.fail("a cascade level without trees")
    splits = reader.peek_integer()
    if not 0 < splits < 64 or (splits + 1) & splits:
        raise reader.fail(f"a tree with {splits} splits; expected a full binary tree (2**depth - 1)")
    leaves = splits + 1
    leaf_tokens = 2 + 4 * parts  # -rows, -columns, then (mantissa, exponent) per value
    per_tree = 1 + 4 * splits + 1 + leaves * leaf_tokens
    start = reader.position
    tokens = np.array(reader.integers(trees * per_tree), dtype=np.int64).reshape(trees, per_tree)

    split_block = tokens[:, 1 : 1 + 4 * splits].reshape(trees, splits, 4)
    leaf_count = tokens[:, 1 + 4 * splits]
    leaf_block = tokens[:, 2 + 4 * splits :].reshape(trees, leaves, leaf_tokens)
    bad_tree = (
        (tokens[:, 0] != splits)
        | (leaf_count != leaves)
        | (leaf_block[:, :, 0] != -2 * parts).any(axis=1)
        | (leaf_block[:, :, 1] != -1).any(axis=1)
    )
    if bad_tree.any():
        first = int(np.argmax(bad_tree))
        raise ModelFormatError(
            f"{reader.name}: tree {first} of a cascade level (from byte {start}) differs in layout"
            f" from the first ({splits} splits, {leaves} leaves of {2 * parts}x1)"
        )
    thresh = _reals(split_block[:, :, 2], split_block[:, :, 3], reader.name)
    pairs = leaf_block[:, :, 2:].reshape(trees, leaves, 2 * parts, 2)
    values = _reals(pairs[..., 0], pairs[..., 1], reader.name).reshape(trees, leaves, parts, 2)
    return split_block[:, :, 0], split_block[:, :, 1], thresh, values


def _deltas(reader: Reader) -> npt.NDArray[np.float32]:
    count = _count(reader, "delta count")
    tokens = np.array(reader.integers(4 * count), dtype=np.int64).reshape(count, 2, 2)
    return _reals(tokens[..., 0], tokens[..., 1], reader.name)


def _reals(
    mantissa: npt.NDArray[np.int64], exponent: npt.NDArray[np.int64], name: str
) -> npt.NDArray[np.float32]:
    """dlib floats read as float: ldexp((float)mantissa, exponent), special exponents for inf/NaN."""
    special = exponent >= 32000
    ordinary = np.where(special, 0, exponent)
    if (np.abs(ordinary) > 400).any():
        raise ModelFormatError(f"{name}: float exponent out of range: {int(np.abs(ordinary).max())}")
    values = np.ldexp(mantissa.astype(np.float32), ordinary.astype(np.int32))
    for code, replacement in _SPECIAL_EXPONENTS.items():
        values[exponent == code] = replacement
    return values.astype(np.float32)


def _count(reader: Reader, what: str) -> int:
    value = reader.integer()
    if not 0 <= value <= _MAX_COUNT:
        raise reader.fail(f"{what} is {value}")
    return value


def _validate(arrays: dict[str, npt.NDArray[np.generic]], pixels: int, parts: int, name: str) -> None:
    for key in ("split_idx1", "split_idx2"):
        index = arrays[key]
        if index.size and (index.min() < 0 or index.max() >= pixels):
            raise ModelFormatError(f"{name}: {key} outside the {pixels} feature pixels")
    anchors = arrays["anchor_idx"]
    if anchors.size and (anchors.min() < 0 or anchors.max() >= parts):
        raise ModelFormatError(f"{name}: anchor_idx outside the {parts} landmarks")
    for key in ("initial_shape", "split_thresh", "leaf_values", "deltas"):
        if not np.isfinite(arrays[key]).all():
            raise ModelFormatError(f"{name}: {key} holds non-finite values")
