"""The geometry behind the head-turn check: how far the nose leaves the plane of the eyes and mouth.

The eyes and the mouth corners lie roughly on one plane; the nose tip stands
out of it. Four points fix a homography between a reference frame and the
current one; were the face a plane (a photo, a screen), that homography would
carry the reference nose onto the observed one whatever the motion. The
*parallax* is how far it misses, in inter-ocular distances (IOD), along and
across the eye axis. `PlaneRectifier` measures it on the current frame warped
back into the reference's geometry and re-detected, which cancels the
detector's own drift on a foreshortened photo (see `liveness`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from safepassage.face.detection import Detection, iou_matrix
from safepassage.face.errors import PipelineInputError
from safepassage.face.pipeline import Detector, RgbImage

LEFT_EYE, RIGHT_EYE, NOSE, MOUTH_LEFT, MOUTH_RIGHT = range(5)
PLANAR = (LEFT_EYE, RIGHT_EYE, MOUTH_LEFT, MOUTH_RIGHT)  # on (about) one plane; the nose is not
_MIN_IOD_PX = 1.0  # below this the points carry no geometry


# ----------------------------------------------------------------------------- geometry on points


def _as_points(points: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    array = np.asarray(points, dtype=np.float64)
    if array.shape != (5, 2) or not np.all(np.isfinite(array)):
        raise PipelineInputError(f"{name} must be five finite (x, y) points, got shape {array.shape}")
    return array


def _eye_axes(points: npt.NDArray[np.float64], name: str) -> tuple[npt.NDArray[np.float64], float]:
    """Unit vector from the image-left eye to the image-right eye, and their distance."""
    axis = points[RIGHT_EYE] - points[LEFT_EYE]
    iod = float(np.hypot(axis[0], axis[1]))
    if iod < _MIN_IOD_PX:
        raise PipelineInputError(f"{name}: the eyes are {iod:.2f} px apart; no face geometry")
    return axis / iod, iod


def yaw_proxy(points: npt.ArrayLike) -> float:
    """Nose tip minus the centroid of the eyes and mouth corners, along the eye axis, in IOD.

    About 0 for a frontal face; positive when the nose points towards the image's right.
    """
    array = _as_points(points, "points")
    axis, iod = _eye_axes(array, "points")
    centroid = array[list(PLANAR)].mean(axis=0)
    return float((array[NOSE] - centroid) @ axis / iod)


def aspect_change(reference_points: npt.ArrayLike, points: npt.ArrayLike) -> float:
    """ln of the change of IOD / (eyes-to-mouth height): the foreshortening of a turn or a tilt.

    About 0 for motion in the image plane; negative when the face turns about
    the vertical axis (a real head or a picture alike), positive when it nods.
    """

    def ratio(array: npt.NDArray[np.float64], name: str) -> float:
        _, iod = _eye_axes(array, name)
        eyes = (array[LEFT_EYE] + array[RIGHT_EYE]) / 2
        mouth = (array[MOUTH_LEFT] + array[MOUTH_RIGHT]) / 2
        height = float(np.hypot(*(mouth - eyes)))
        if height < _MIN_IOD_PX:
            raise PipelineInputError(f"{name}: the mouth is {height:.2f} px from the eyes; no face geometry")
        return iod / height

    reference = ratio(_as_points(reference_points, "reference_points"), "reference_points")
    return math.log(ratio(_as_points(points, "points"), "points") / reference)


def _normaliser(points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Hartley's normalisation: centroid to the origin, mean distance sqrt(2)."""
    centre = points.mean(axis=0)
    spread = float(np.mean(np.hypot(*(points - centre).T)))
    if spread < 1e-9:
        raise PipelineInputError("the eyes and mouth corners are all at one place; no face geometry")
    scale = math.sqrt(2.0) / spread
    return np.array([[scale, 0.0, -scale * centre[0]], [0.0, scale, -scale * centre[1]], [0.0, 0.0, 1.0]])


def plane_homography(reference_points: npt.ArrayLike, points: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The homography carrying the reference's eyes and mouth corners onto the current ones.

    Solved exactly from the four pairs in float64 on normalised coordinates (OpenCV's
    getPerspectiveTransform takes float32, which leaves 1e-6 IOD of parallax on a plane).
    """
    source = _as_points(reference_points, "reference_points")[list(PLANAR)]
    target = _as_points(points, "points")[list(PLANAR)]
    to_source, to_target = _normaliser(source), _normaliser(target)
    src = np.c_[source, np.ones(4)] @ to_source.T
    dst = np.c_[target, np.ones(4)] @ to_target.T
    system = np.zeros((8, 8))
    values = np.zeros(8)
    for k, ((x, y, _), (u, v, _)) in enumerate(zip(src, dst, strict=True)):
        system[2 * k] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        system[2 * k + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
        values[2 * k : 2 * k + 2] = u, v
    if np.linalg.cond(system) > 1e8:  # three of the four points (nearly) on one line
        raise PipelineInputError("the eyes and mouth corners fix no homography (degenerate quadrilateral)")
    normalised = np.append(np.linalg.solve(system, values), 1.0).reshape(3, 3)
    result: npt.NDArray[np.float64] = np.linalg.inv(to_target) @ normalised @ to_source
    result /= result[2, 2]
    return result


def planar_parallax(reference_points: npt.ArrayLike, points: npt.ArrayLike) -> tuple[float, float]:
    """(along, across): observed nose minus the nose a plane would show, in the current frame's IOD.

    The plane is the one through the eyes and mouth corners: the homography
    that carries the reference's four onto the current four predicts where the
    reference nose would be if the face were flat. ``along`` is measured on the
    current eye axis (positive towards the image's right eye, so towards the
    image's right on an upright face), ``across`` perpendicular to it
    (positive downwards on an upright face). Both are about 0 for any motion of
    a plane, and ``along`` grows with a real head's turn.
    """
    reference = _as_points(reference_points, "reference_points")
    current = _as_points(points, "points")
    homography = plane_homography(reference, current)
    projected = homography @ np.array([reference[NOSE, 0], reference[NOSE, 1], 1.0])
    if abs(projected[2]) < 1e-12:
        raise PipelineInputError("the plane's homography sends the nose to infinity")
    offset = current[NOSE] - projected[:2] / projected[2]
    axis, iod = _eye_axes(current, "points")
    normal = np.array([-axis[1], axis[0]])
    return float(offset @ axis / iod), float(offset @ normal / iod)


# ----------------------------------------------------------------------------- rectified re-detection


def best_overlap(
    detections: Sequence[Detection], box: npt.NDArray[np.float64]
) -> tuple[Detection | None, float]:
    if not detections:
        return None, 0.0
    boxes = np.array([d.box for d in detections], dtype=np.float64)
    overlaps = iou_matrix(box[None, :], boxes)[0]
    best = int(np.argmax(overlaps))
    return detections[best], float(overlaps[best])


class PlaneRectifier:
    """Measures the parallax on patches warped back into the reference's geometry.

    A similarity maps the reference face box onto a ``patch_size`` square
    (``patch_margin`` times the box); each later frame is warped into the same
    square through the inverse of its plane homography, so a flat face comes
    back as the reference patch and the detector sees (nearly) the same image.
    """

    def __init__(
        self,
        detector: Detector,
        frame: RgbImage,
        face: Detection,
        *,
        patch_size: int,
        patch_margin: float,
        refine_steps: int,
    ) -> None:
        self.detector = detector
        self.size = patch_size
        self.refine_steps = refine_steps
        self.reference_points = _as_points(face.points, "reference face")
        left, top, right, bottom = face.box
        scale = self.size / (max(right - left, bottom - top) * patch_margin)
        centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
        self.to_patch = np.array(
            [
                [scale, 0.0, self.size / 2 - scale * centre_x],
                [0.0, scale, self.size / 2 - scale * centre_y],
                [0.0, 0.0, 1.0],
            ]
        )
        patch_box = np.array([left, top, right, bottom]) * scale
        self.patch_box = patch_box + np.array([self.to_patch[0, 2], self.to_patch[1, 2]] * 2)
        found = self._detect(self._warp(frame, self.to_patch))
        if found is None:
            raise PipelineInputError("the reference face is not found again on its own patch")
        self.patch_points = _as_points(found.points, "reference patch face")

    def _warp(self, frame: RgbImage, transform: npt.NDArray[np.float64]) -> RgbImage:
        patch = cv2.warpPerspective(frame, transform, (self.size, self.size), flags=cv2.INTER_LINEAR)
        return np.asarray(patch, dtype=np.uint8)

    def _detect(self, patch: RgbImage) -> Detection | None:
        found, overlap = best_overlap(self.detector.detect(patch), self.patch_box)
        return found if overlap >= 0.3 else None  # another face, or none, where ours should be

    def parallax(self, frame: RgbImage, points: npt.ArrayLike) -> float | None:
        """Rectified parallax along the eye axis (IOD), or None when the patch shows no face."""
        transform = self.to_patch @ np.linalg.inv(plane_homography(self.reference_points, points))
        measured: float | None = None
        for step in range(self.refine_steps + 1):
            found = self._detect(self._warp(frame, transform))
            if found is None:
                break  # a strongly turned face may vanish after refinement: keep the last measure
            try:
                measured = planar_parallax(self.patch_points, found.points)[0]
                if step < self.refine_steps:
                    residual = plane_homography(self.patch_points, found.points)
                    transform = np.linalg.inv(residual) @ transform
            except PipelineInputError:
                break
        return measured
