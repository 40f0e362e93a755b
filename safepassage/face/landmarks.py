"""dlib's 5-point face landmarks (an ensemble of regression trees) in numpy.

Reads the arrays `safepassage.model_pack.shape_predictor` writes (layout in its docstring)
and runs the cascade exactly as dlib's ``shape_predictor::operator()`` does
(dlib/image_processing/shape_predictor.h), so its points equal dlib's on the
same box:

- a box is dlib's rectangle (left, top, right, bottom), right and bottom
  inclusive; box-normalised (u, v) maps to (left + u*(right-left),
  top + v*(bottom-top)) and a pixel position is floor(x + 0.5);
- per cascade level: the similarity transform (its 2x2 part only, least squares,
  computed in double and used in float) from the initial shape to the current
  shape; feature pixel i sits at transform*delta[i] + current[anchor[i]];
  its value is the grey level (r+g+b)//3 (dlib's rgb -> unsigned char), 0
  outside the image;
- a split goes left (child 2i+1) when feature[idx1] - feature[idx2] > thresh;
  the leaves of all trees are added to the shape in tree order, in float.

Speed: all trees (and all faces) of a level run at once. Grey values are
integers, so ``diff > thresh`` is ``diff > floor(thresh)`` in int16; the 15
split outcomes of a tree are packed into 16 bits and a 65536-entry table
gives the leaf, so no loop runs over trees or tree depth.
"""

from __future__ import annotations

import numbers
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from safepassage.face.errors import ModelFileMissing, ModelShapeMismatch, PipelineInputError

Box = tuple[int, int, int, int]
_ARRAYS = ("initial_shape", "split_idx1", "split_idx2", "split_thresh", "leaf_values", "anchor_idx", "deltas")
_CODE_BITS = 16  # split outcomes of one tree, packed big-endian: node 0 is the top bit


class ShapePredictorLandmarker:
    """dlib's shape predictor: `landmarks(image, boxes)` -> (n, parts, 2) points."""

    def __init__(self, npz_path: Path) -> None:
        self.path = npz_path
        arrays = _load(npz_path)
        initial = arrays["initial_shape"].astype(np.float32)
        self.parts = initial.shape[0]
        self.levels, self.trees, splits = arrays["split_idx1"].shape
        leaves = splits + 1
        self._initial = initial.reshape(1, -1)
        # Similarity: a = sum f.t / sum|f|^2, b = sum f x t / sum|f|^2 with f the centred initial
        # shape (sum f = 0, so t need not be centred). One (2*parts, 4) matrix gives the two
        # columns of [[a, -b], [b, a]]: (a, b) and (-b, a).
        centred = initial.astype(np.float64) - initial.astype(np.float64).mean(axis=0)
        spread = float((centred**2).sum())
        weights = np.zeros((self.parts, 2, 4))
        weights[:, 0, 0], weights[:, 1, 0] = centred[:, 0], centred[:, 1]  # a
        weights[:, 0, 1], weights[:, 1, 1] = -centred[:, 1], centred[:, 0]  # b
        weights[..., 2], weights[..., 3] = -weights[..., 1], weights[..., 0]  # -b, a
        self._similarity = weights.reshape(-1, 4) / spread if spread else None
        self._dx = arrays["deltas"][..., 0].astype(np.float32)  # (levels, pixels)
        self._dy = arrays["deltas"][..., 1].astype(np.float32)
        # anchor positions as a one-hot product (exact: one 1*x, the rest 0*y): (levels, parts, pixels)
        anchor = arrays["anchor_idx"].astype(np.intp)
        self._anchor = (anchor[:, None, :] == np.arange(self.parts)[None, :, None]).astype(np.float32)
        # Each tree's splits padded to 16 with a split that never goes left (0 > 32767 is false),
        # so the outcomes of a level pack straight into one 16-bit code per tree.
        pad = ((0, 0), (0, 0), (0, _CODE_BITS - splits))
        self._idx1 = np.pad(arrays["split_idx1"], pad).reshape(self.levels, -1).astype(np.intp)
        self._idx2 = np.pad(arrays["split_idx2"], pad).reshape(self.levels, -1).astype(np.intp)
        # diff is an integer in [-255, 255]: diff > t  <=>  diff > floor(t), clipped to stay in int16.
        floor = np.clip(np.floor(arrays["split_thresh"].astype(np.float64)), -300, 300).astype(np.int16)
        self._thresh = np.pad(floor, pad, constant_values=np.iinfo(np.int16).max).reshape(self.levels, -1)
        self._leaves = arrays["leaf_values"].astype(np.float32).reshape(self.levels, self.trees * leaves, -1)
        self._leaf_base = np.arange(self.trees, dtype=np.intp) * leaves
        self._leaf_of_code = _leaf_table(splits)

    def landmarks(
        self, image: npt.NDArray[np.uint8], boxes: Sequence[Box], *, subpixel: bool = False
    ) -> npt.NDArray[np.float32]:
        """Points for each dlib box, (len(boxes), parts, 2) as (x, y).

        By default the points are rounded as dlib rounds them (floor(x + 0.5)),
        which is what dlib's face chips were made from; ``subpixel=True`` gives
        the unrounded positions.
        """
        pixels = _pixel_rows(image)
        rects = _boxes(boxes)
        count = rects.shape[0]
        if count == 0:
            return np.zeros((0, self.parts, 2), dtype=np.float32)
        height, width = image.shape[:2]
        origin = rects[:, 0:2, None]  # (n, 2, 1): left, top
        span = rects[:, 2:4, None] - origin  # right - left, bottom - top
        rounding = origin + 0.5
        limits = np.array([[width], [height]], dtype=np.uintp)
        shape = np.repeat(self._initial, count, axis=0)  # (n, 2*parts): x0 y0 x1 y1 ...
        for level in range(self.levels):
            column0, column1 = self._transform(shape)
            # each feature pixel's anchor landmark, (n, 2, pixels)
            points = shape.reshape(count, self.parts, 2).transpose(0, 2, 1) @ self._anchor[level]
            uv = (column0 * self._dx[level] + column1 * self._dy[level]) + points
            position = uv.astype(np.float64)
            position *= span
            position += rounding
            xy = np.floor(position, out=position).astype(np.intp)  # floor(x + 0.5), as dlib rounds
            fits = xy.view(np.uintp) < limits  # negative coordinates wrap to huge values
            inside = fits[:, 0] & fits[:, 1]
            flat = np.where(inside, xy[:, 1] * width + xy[:, 0], 0)
            grey = _grey(pixels, flat)
            grey *= inside
            diff = np.take(grey, self._idx1[level], axis=1) - np.take(grey, self._idx2[level], axis=1)
            codes = np.packbits(diff > self._thresh[level], axis=1).view(">u2")  # (n, trees)
            steps = np.take(self._leaves[level], self._leaf_of_code[codes] + self._leaf_base, axis=0)
            # dlib adds the trees' leaves to the shape one after the other, in float; so here:
            # the first addition, then a reduction over a non-contiguous axis, which runs in order.
            steps[:, 0, :] += shape
            shape = np.add.reduce(steps, axis=1)
        final = shape.reshape(count, self.parts, 2).astype(np.float64) * span.transpose(0, 2, 1)
        final += rects[:, None, 0:2]
        if not subpixel:
            final = np.floor(final + 0.5)
        return final.astype(np.float32)

    def _transform(
        self, shape: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Columns (a, b) and (-b, a) of the similarity initial -> current shape, each (n, 2, 1).

        In 2-D, Umeyama's least-squares solution (dlib's find_similarity_transform,
        in double) is [[a, -b], [b, a]]; dlib then uses it in float.
        """
        if self._similarity is None:
            columns = np.tile(np.array([1, 0, 0, 1], dtype=np.float32), (shape.shape[0], 1))
        else:
            columns = (shape.astype(np.float64) @ self._similarity).astype(np.float32)
        columns = columns[:, :, None]
        return columns[:, 0:2], columns[:, 2:4]


def _leaf_table(splits: int) -> npt.NDArray[np.intp]:
    """Leaf index for every 16-bit code of split outcomes (bit 15 - i: node i goes left)."""
    codes = np.arange(1 << _CODE_BITS)
    node = np.zeros_like(codes)
    while True:
        inner = node < splits
        if not inner.any():
            break
        went_left = (codes >> (_CODE_BITS - 1 - np.minimum(node, splits - 1))) & 1
        node = np.where(inner, 2 * node + 2 - went_left, node)
    return (node - splits).astype(np.intp)


def _load(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [name for name in _ARRAYS if name not in archive.files]
            if missing:
                raise ModelShapeMismatch(f"{path}: shape predictor arrays missing: {', '.join(missing)}")
            arrays = {name: archive[name] for name in _ARRAYS}
    except FileNotFoundError as error:
        raise ModelFileMissing(f"{path}: shape predictor file not found") from error
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise ModelShapeMismatch(f"{path}: not a shape predictor npz ({error})") from error
    _check(path, arrays)
    return arrays


def _check(path: Path, arrays: dict[str, npt.NDArray[np.generic]]) -> None:
    def fail(what: str) -> ModelShapeMismatch:
        return ModelShapeMismatch(f"{path}: {what}")

    kinds = {
        "initial_shape": "f",
        "split_thresh": "f",
        "leaf_values": "f",
        "deltas": "f",
        "split_idx1": "iu",
        "split_idx2": "iu",
        "anchor_idx": "iu",
    }
    for name, kind in kinds.items():
        if arrays[name].dtype.kind not in kind:
            raise fail(f"{name} has dtype {arrays[name].dtype}")
    initial = arrays["initial_shape"]
    if initial.ndim != 2 or initial.shape[1] != 2 or initial.shape[0] < 1:
        raise fail(f"initial_shape is {initial.shape}, expected (parts, 2)")
    parts = initial.shape[0]
    split_shape = arrays["split_idx1"].shape
    if len(split_shape) != 3 or 0 in split_shape:
        raise fail(f"split_idx1 is {split_shape}, expected (levels, trees, splits)")
    levels, trees, splits = split_shape
    if splits not in (1, 3, 7, 15):
        raise fail(f"trees have {splits} splits; this runtime takes full trees of depth 1 to 4")
    anchor = arrays["anchor_idx"]
    if anchor.ndim != 2 or anchor.shape[0] != levels or anchor.shape[1] < 1:
        raise fail(f"anchor_idx is {anchor.shape}, expected ({levels}, pixels)")
    pixels = anchor.shape[1]
    expected = {
        "split_idx2": split_shape,
        "split_thresh": split_shape,
        "leaf_values": (levels, trees, splits + 1, parts, 2),
        "deltas": (levels, pixels, 2),
    }
    for name, want in expected.items():
        if arrays[name].shape != want:
            raise fail(f"{name} is {arrays[name].shape}, expected {want}")
    for name, bound in (("split_idx1", pixels), ("split_idx2", pixels), ("anchor_idx", parts)):
        values = arrays[name]
        if values.min() < 0 or values.max() >= bound:
            raise fail(f"{name} holds indices outside 0..{bound - 1}")
    for name in ("initial_shape", "split_thresh", "leaf_values", "deltas"):
        if not np.isfinite(arrays[name]).all():
            raise fail(f"{name} holds non-finite values")


def _pixel_rows(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The image as (H*W, 3) RGB rows, or (H*W,) for a greyscale image."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise PipelineInputError(f"image must be a uint8 numpy array, got {_describe(image)}")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise PipelineInputError(f"image must be HxWx3 RGB (or HxW grey), got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise PipelineInputError(f"image is empty: shape {image.shape}")
    rows = np.ascontiguousarray(image)
    return rows.reshape(-1, 3) if image.ndim == 3 else rows.reshape(-1)


def _grey(pixels: npt.NDArray[np.uint8], flat: npt.NDArray[np.intp]) -> npt.NDArray[np.int16]:
    """dlib's get_pixel_intensity: (r + g + b) // 3 for RGB (assign_pixel to unsigned char)."""
    if pixels.ndim == 1:
        return np.take(pixels, flat).astype(np.int16)
    rgb = np.take(pixels, flat, axis=0)  # (n, pixels, 3)
    return (rgb[..., 0].astype(np.int16) + rgb[..., 1] + rgb[..., 2]) // 3


def _boxes(boxes: Sequence[Box]) -> npt.NDArray[np.float64]:
    rows: list[tuple[int, int, int, int]] = []
    for i, box in enumerate(boxes):
        try:
            values = tuple(box)
        except TypeError:
            raise PipelineInputError(f"box {i} is not a (left, top, right, bottom) tuple: {box!r}") from None
        integral = all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values)
        if len(values) != 4 or not integral:
            raise PipelineInputError(f"box {i} must be 4 integers (left, top, right, bottom), got {box!r}")
        left, top, right, bottom = (int(v) for v in values)
        if right < left or bottom < top:
            raise PipelineInputError(f"box {i} is empty: right/bottom before left/top in {box!r}")
        if max(abs(left), abs(top), abs(right), abs(bottom)) > 1 << 24:
            raise PipelineInputError(f"box {i} has coordinates out of range: {box!r}")
        rows.append((left, top, right, bottom))
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array of {value.dtype}, shape {value.shape}"
    return type(value).__name__
