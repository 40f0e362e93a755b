"""Face alignment: dlib's face chip and the ArcFace 112x112 crop.

`dlib_chip` reproduces ``dlib.get_face_chip(img, shape, size, padding)``
(get_face_chip_details and extract_image_chips in
dlib/image_transforms/interpolation.h, pyramid_down<2> in image_pyramid.h):

1. the least-squares similarity (Umeyama) from dlib's 5-point template,
   ``(padding + p) / (1 + 2 padding) * size``, to the landmarks gives an angle
   and a scale; the chip's source rectangle is ``centered_drect`` around the
   image of the chip centre, with width and height ``size * scale - 1``;
2. when that rectangle is more than about twice the chip (its pyramid_down
   image still has more pixels than the chip), dlib crops the image to the
   rotated rectangle grown by a margin (2, then 2*grow + 2 per level),
   downsamples the crop with its 5-tap [1 4 6 4 1] filter (integer sums,
   output (n - 3) // 2 per axis, divided by 256 and truncated), maps the
   rectangle with pyramid_down's ``p / 2 - (1.25, 0.75)`` and samples the
   smaller image; this module does the same (the filter sums through
   cv2.sepFilter2D in float32, exact for sums below 2**16);
3. the three chip corners map to the rotated rectangle's corners; each chip
   pixel is sampled bilinearly in double and truncated to uint8; a pixel whose
   2x2 neighbourhood leaves the (cropped) source stays 0.

Sampling is numpy, not OpenCV's warpAffine: warpAffine snaps positions to 1/32
pixel, rounds instead of truncating and blends the border into the edge pixels
(measured on 138 real faces: mean 0.5, max 214 grey levels from dlib, at the
chip's edges). This follows dlib's arithmetic step for step and matched
dlib.get_face_chip exactly on every face and random similarity tried; only the
last bits of dlib's SVD-based transforms are not reproduced. About 0.7 ms a chip.

`arcface_chip` is insightface's ``norm_crop``: a similarity from five points
(eye centres, nose tip, mouth corners) to ``ARCFACE_TEMPLATE`` and OpenCV's
bilinear warpAffine with a black border, as ArcFace-style models were trained.
"""

from __future__ import annotations

import math
import numbers

import cv2
import numpy as np
import numpy.typing as npt

from safepassage.face.errors import PipelineInputError

RgbImage = npt.NDArray[np.uint8]
Points = npt.NDArray[np.floating]

# dlib's get_face_chip_details, 5-point model: right eye outer and inner corner,
# left eye outer and inner corner, base of the nose; unit square of the chip.
DLIB_TEMPLATE = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)
# insightface's arcface_dst for a 112x112 chip: left eye, right eye, nose, left and right mouth corner.
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)
MAX_CHIP = 4096
_PYRAMID_TAPS = np.array([1, 4, 6, 4, 1], dtype=np.float32)
_MAX_COORDINATE = 1e7

Rect = tuple[float, float, float, float]  # dlib drectangle: left, top, right, bottom (inclusive)


def dlib_chip(image: RgbImage, landmarks: Points, size: int = 150, padding: float = 0.25) -> RgbImage:
    """``dlib.get_face_chip(image, shape, size, padding)`` for dlib's 5 points, (size, size, 3) uint8."""
    _check_image(image)
    points = _check_points(landmarks, "landmarks")
    _check_size(size)
    if isinstance(padding, bool) or not isinstance(padding, numbers.Real) or not 0 <= float(padding) <= 10:
        raise PipelineInputError(f"padding must be a number from 0 to 10, got {padding!r}")
    padding = float(np.float32(padding))  # dlib's Python binding takes padding as a C float
    template = (padding + DLIB_TEMPLATE) / (2 * padding + 1) * size
    (a, b), (tx, ty) = _similarity(template, points)
    # chip_details(chip_points, img_points, dims): angle and scale of the similarity, and the
    # rectangle centred on where the chip centre lands.
    angle = math.atan2(b, a)
    scale = math.sqrt(a * a + b * b)
    if not scale > 0:
        raise PipelineInputError("landmarks collapse to a single point")
    half = size / 2.0
    centre = (a * half - b * half + tx, b * half + a * half + ty)
    extent = size * scale - 1
    rect = (centre[0] - extent / 2, centre[1] - extent / 2, centre[0] + extent / 2, centre[1] + extent / 2)
    return _extract(image, rect, angle, size)


def arcface_chip(image: RgbImage, points5: Points, size: int = 112) -> RgbImage:
    """insightface's ``norm_crop``: the ArcFace template crop, (size, size, 3) uint8.

    `points5` are left eye centre, right eye centre, nose tip, left and right mouth corner
    (image left/right). Sizes that are multiples of 112 scale the template; others use
    insightface's 128-based variant (template * size/128, shifted 8*size/128 right).
    """
    _check_image(image)
    points = _check_points(points5, "points5")
    _check_size(size)
    if size % 112 == 0:
        ratio, shift = size / 112.0, 0.0
    else:
        ratio = size / 128.0
        shift = 8.0 * ratio
    template = ARCFACE_TEMPLATE * ratio + np.array([shift, 0.0])
    (a, b), (tx, ty) = _similarity(points, template)
    if not a * a + b * b > 0:
        raise PipelineInputError("points5 collapse to a single point")
    matrix = np.array([[a, -b, tx], [b, a, ty]], dtype=np.float64)
    chip = cv2.warpAffine(
        np.ascontiguousarray(image),
        matrix,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0),
    )
    return np.asarray(chip, dtype=np.uint8)


def _similarity(source: Points, target: Points) -> tuple[tuple[float, float], tuple[float, float]]:
    """Least-squares similarity source -> target as ((a, b), t): x' = [[a, -b], [b, a]] x + t.

    The 2-D closed form of Umeyama's method (dlib's find_similarity_transform, skimage's
    SimilarityTransform): a = sum f.g / sum|f|^2, b = sum f x g / sum|f|^2 over centred points.
    """
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    f, g = src - src_mean, dst - dst_mean
    spread = float((f**2).sum())
    if spread == 0:
        raise PipelineInputError("alignment template collapses to a single point")
    a = float((f * g).sum()) / spread
    b = float((f[:, 0] * g[:, 1] - f[:, 1] * g[:, 0]).sum()) / spread
    tx = float(dst_mean[0] - (a * src_mean[0] - b * src_mean[1]))
    ty = float(dst_mean[1] - (b * src_mean[0] + a * src_mean[1]))
    return (a, b), (tx, ty)


def _extract(image: RgbImage, rect: Rect, angle: float, size: int) -> RgbImage:
    """dlib's extract_image_chip(img, chip_details(rect, angle, size x size), chip) with bilinear sampling."""
    height, width = image.shape[:2]
    if angle == 0 and _width(rect) == size and _height(rect) == size:
        return _copy_chip(image, _lround(rect[0]), _lround(rect[1]), size)
    depth, grow = 0, 2.0
    down = _rect_down(rect)
    while _area(down) > size * size:
        down = _rect_down(down)
        depth += 1
        grow = grow * 2 + 2
    corners = _rotated_corners(rect, angle)
    xs = [c[0] for c in corners]
    ys = [c[1] for c in corners]
    grown = (min(xs) - grow, min(ys) - grow, max(xs) + grow, max(ys) + grow)
    clipped = (
        max(grown[0], 0.0),
        max(grown[1], 0.0),
        min(grown[2], width - 1.0),
        min(grown[3], height - 1.0),
    )
    box = tuple(_lround(v) for v in clipped)  # rectangle(drectangle): lround each side
    if box[0] > box[2] or box[1] > box[3]:
        return np.zeros((size, size, 3), dtype=np.uint8)  # nothing of the image in reach
    source = image[box[1] : box[3] + 1, box[0] : box[2] + 1]
    level = -1
    local = (rect[0] - box[0], rect[1] - box[1], rect[2] - box[0], rect[3] - box[1])
    while _area(_rect_down(local)) > size * size:
        level += 1
        local = _rect_down(local)
    for _ in range(min(level, depth - 1) + 1):
        source = _pyramid_down(source)
    return _sample(source, _rotated_corners(local, angle), size)


def _sample(source: RgbImage, corners: list[tuple[float, float]], size: int) -> RgbImage:
    """dlib's transform_image with interpolate_bilinear.

    Chip pixel (c, r) samples tl + c * (tr - tl) / (size - 1) + r * (bl - tl) / (size - 1).
    """
    rows, cols = source.shape[:2]
    if rows < 2 or cols < 2:
        return np.zeros((size, size, 3), dtype=np.uint8)
    (x0, y0), (x1, y1), (x2, y2) = corners[0], corners[1], corners[3]
    last = size - 1.0
    m00, m10 = (x1 - x0) / last, (y1 - y0) / last
    m01, m11 = (x2 - x0) / last, (y2 - y0) / last
    grid = np.arange(size, dtype=np.float64)
    px = ((m00 * grid[None, :] + m01 * grid[:, None]) + x0).reshape(-1)
    py = ((m10 * grid[None, :] + m11 * grid[:, None]) + y0).reshape(-1)
    left = np.floor(px)
    top = np.floor(py)
    lr = px - left
    tb = py - top
    valid = (left >= 0) & (top >= 0) & (left < cols - 1) & (top < rows - 1)
    all_valid = bool(valid.all())
    if not all_valid:
        np.clip(left, 0, cols - 2, out=left)
        np.clip(top, 0, rows - 2, out=top)
    index = (top * cols + left).astype(np.intp)
    count = index.size
    # channel planes, and the four neighbours of every chip pixel in one gather: (3, 4 * count)
    planes = np.ascontiguousarray(source.transpose(2, 0, 1)).reshape(3, -1)
    near = np.take(planes, np.concatenate([index, index + 1, index + cols, index + cols + 1]), axis=1)
    near = near.astype(np.float64)
    tl, tr = near[:, :count], near[:, count : 2 * count]
    bl, br = near[:, 2 * count : 3 * count], near[:, 3 * count :]
    keep = 1 - lr
    value = (1 - tb) * (keep * tl + lr * tr) + tb * (keep * bl + lr * br)  # dlib's order of operations
    chip = value.astype(np.uint8)  # static_cast<unsigned char>: truncation
    if not all_valid:
        chip *= valid
    return np.ascontiguousarray(chip.reshape(3, size, size).transpose(1, 2, 0))


def _pyramid_down(image: RgbImage) -> RgbImage:
    """dlib's pyramid_down<2> on RGB: [1 4 6 4 1] x [1 4 6 4 1] / 256 (integer, truncated), every other pixel.

    dlib's output pixel (r, c) is the filter centred on input (2r + 2, 2c + 2), (rows - 3) // 2 by
    (cols - 3) // 2 of them, so no border is involved; sums stay below 2**16, exact in float32.
    """
    rows, cols = image.shape[:2]
    if rows <= 8 or cols <= 8:
        return np.zeros((0, 0, 3), dtype=np.uint8)
    out_rows, out_cols = (rows - 3) // 2, (cols - 3) // 2
    filtered = cv2.sepFilter2D(np.ascontiguousarray(image), cv2.CV_32F, _PYRAMID_TAPS, _PYRAMID_TAPS)
    sums = filtered[2 : 2 + 2 * out_rows : 2, 2 : 2 + 2 * out_cols : 2]
    return np.asarray(sums * np.float32(1 / 256), dtype=np.float32).astype(np.uint8)


def _copy_chip(image: RgbImage, left: int, top: int, size: int) -> RgbImage:
    """basic_extract_image_chip: a plain crop at the rounded rectangle, zero where it leaves the image."""
    height, width = image.shape[:2]
    chip = np.zeros((size, size, 3), dtype=np.uint8)
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + size, width), min(top + size, height)
    if x0 < x1 and y0 < y1:
        chip[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return chip


def _rect_down(rect: Rect) -> Rect:
    """pyramid_down<2>::rect_down: each corner p -> p / 2 - (1.25, 0.75)."""
    return (rect[0] / 2.0 - 1.25, rect[1] / 2.0 - 0.75, rect[2] / 2.0 - 1.25, rect[3] / 2.0 - 0.75)


def _rotated_corners(rect: Rect, angle: float) -> list[tuple[float, float]]:
    """rotate_point(center(rect), corner, angle) for tl, tr, br, bl."""
    cx, cy = (rect[0] + rect[2]) / 2.0, (rect[1] + rect[3]) / 2.0
    sin, cos = math.sin(angle), math.cos(angle)
    corners = [(rect[0], rect[1]), (rect[2], rect[1]), (rect[2], rect[3]), (rect[0], rect[3])]
    rotated = []
    for x, y in corners:
        dx, dy = x - cx, y - cy
        rotated.append((cos * dx - sin * dy + cx, sin * dx + cos * dy + cy))
    return rotated


def _width(rect: Rect) -> float:
    return 0.0 if rect[0] > rect[2] or rect[1] > rect[3] else rect[2] - rect[0] + 1


def _height(rect: Rect) -> float:
    return 0.0 if rect[0] > rect[2] or rect[1] > rect[3] else rect[3] - rect[1] + 1


def _area(rect: Rect) -> float:
    return _width(rect) * _height(rect)


def _lround(value: float) -> int:
    """C's lround: halves away from zero."""
    magnitude = abs(value)
    whole = math.floor(magnitude)
    if magnitude - whole >= 0.5:
        whole += 1
    return int(math.copysign(whole, value))


def _check_image(image: object) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = f"{image.dtype} array" if isinstance(image, np.ndarray) else type(image).__name__
        raise PipelineInputError(f"image must be a uint8 numpy array, got {kind}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise PipelineInputError(f"image must be HxWx3 RGB, got shape {image.shape}")


def _check_points(points: object, name: str) -> npt.NDArray[np.float64]:
    try:
        array = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise PipelineInputError(f"{name} must be a (5, 2) array of numbers") from None
    if array.shape != (5, 2):
        raise PipelineInputError(f"{name} must have shape (5, 2), got {array.shape}")
    if not np.isfinite(array).all() or np.abs(array).max() > _MAX_COORDINATE:
        raise PipelineInputError(f"{name} must be finite coordinates within +-{_MAX_COORDINATE:g}")
    return array


def _check_size(size: object) -> None:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or not 2 <= size <= MAX_CHIP:
        raise PipelineInputError(f"size must be an integer from 2 to {MAX_CHIP}, got {size!r}")
