"""CenterFace detections mapped onto the geometry of dlib's HOG face detector boxes.

dlib's 5-point shape predictor was trained on boxes from dlib's own frontal face
detector and places its landmarks relative to such a box; a box from another
detector (CenterFace's is taller, sits lower and scales differently) must be
turned into the box dlib would have drawn around the same face first.

The model (linear, translation-invariant and scale-equivariant, so it holds at
any resolution): with the CenterFace box centre (cx, cy), width w and height h,
the centroid (px, py) of its five points, the inter-ocular distance iod and the
eye-midpoint-to-mouth-midpoint distance em (all in continuous pixels, pixel i
covering [i, i+1)),

    dlib centre x = cx + CENTRE_X . (px - cx, w, h, iod, em)
    dlib centre y = cy + CENTRE_Y . (py - cy, w, h, iod, em)
    dlib side     =      SIDE     . (w, h, iod, em)

and the box is the square of that side about that centre (dlib's boxes are
square to within a pixel), as an integer dlib rectangle with inclusive right
and bottom: centre = ((left + right + 1) / 2, (top + bottom + 1) / 2),
side = right - left + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from safepassage.face.detection import Box, Detection

DlibRect = tuple[int, int, int, int]

# Fitted by least squares with
#   uv run python benchmarks/detection_eval.py --calibrate
# (benchmarks/detection_eval.py: calibrate()): CenterFace (max_side 640, score 0.5)
# and dlib.get_frontal_face_detector() (upsample 1) on the first 400 images of
# ../shared/data/faces/lfw (sorted paths, 250x250 deep-funneled); detections paired
# one-to-one at IoU >= 0.4, faces cut by the frame edge left out: 412 faces.
# Corner error (mean distance of the mapped top-left and bottom-right corners to
# dlib's, over dlib's side): on those faces mean 6.1 px = 0.060 (median 0.052, p95 0.129);
# held out: 1418 faces of the other 1374 LFW images mean 0.057 (p95 0.119), 20 faces of
# face_recognition/ photos (CenterFace on the frame downscaled to 640, dlib at full
# resolution) mean 0.084 (p95 0.138). dlib's own boxes come in discrete sizes (steps of
# 6/5, its image pyramid) on an 8-pixel grid at each level, so about 0.05 is the floor.
# The four size features are strongly correlated: the coefficients are not meaningful one
# by one; refit them all together.
CENTRE_X = (0.778, 0.0241, -0.0855, -0.1354, 0.2497)
CENTRE_Y = (0.5518, 0.0342, 0.0691, 0.2045, -0.4457)
SIDE = (0.724, 0.2949, -0.0623, 0.0433)
CALIBRATION_NOTE = (
    "412 LFW faces; corner error mean 0.060 of dlib's side (p95 0.129); held out: 1418 LFW faces"
    " mean 0.057 (p95 0.119), 20 face_recognition/ faces mean 0.084 (p95 0.138)"
)


@dataclass(frozen=True)
class BoxMapping:
    """Coefficients of the model above: CENTRE_X, CENTRE_Y (5 each) and SIDE (4)."""

    centre_x: tuple[float, ...]
    centre_y: tuple[float, ...]
    side: tuple[float, ...]

    def geometry(self, box: Box, points: npt.NDArray[np.float32]) -> tuple[float, float, float]:
        """(centre x, centre y, side) of the dlib-style box, in continuous pixels."""
        x_features, y_features, sizes, centre_x, centre_y = geometry_features(box, points)
        return (
            centre_x + float(np.dot(self.centre_x, x_features)),
            centre_y + float(np.dot(self.centre_y, y_features)),
            float(np.dot(self.side, sizes)),
        )


CALIBRATED = BoxMapping(CENTRE_X, CENTRE_Y, SIDE)


def geometry_features(
    box: Box, points: npt.NDArray[np.float32] | npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], float, float]:
    """(x features, y features, side features, cx, cy) of one detection, as the model uses them."""
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    marks = np.asarray(points, dtype=np.float64)
    centroid = marks.mean(axis=0)
    iod = float(np.hypot(*(marks[1] - marks[0])))
    eyes = (marks[0] + marks[1]) / 2
    mouth = (marks[3] + marks[4]) / 2
    em = float(np.hypot(*(mouth - eyes)))
    sizes = np.array([width, height, iod, em], dtype=np.float64)
    x_features = np.concatenate([[centroid[0] - centre_x], sizes])
    y_features = np.concatenate([[centroid[1] - centre_y], sizes])
    return x_features, y_features, sizes, centre_x, centre_y


def square_rect(centre_x: float, centre_y: float, side: float) -> DlibRect:
    """The integer dlib rectangle (inclusive right/bottom) nearest a square of continuous geometry."""
    pixels = max(1, round(side))
    left = round(centre_x - pixels / 2)
    top = round(centre_y - pixels / 2)
    return left, top, left + pixels - 1, top + pixels - 1


def to_dlib_box(detection: Detection, mapping: BoxMapping = CALIBRATED) -> DlibRect:
    """The dlib rectangle (left, top, right, bottom; right and bottom inclusive) for a CenterFace face.

    It may reach outside the frame, as dlib's own boxes may.
    """
    return square_rect(*mapping.geometry(detection.box, detection.points))
