"""Face detection: CenterFace (an anchor-free "face as a point" detector) in onnxruntime.

The model (``centerface.onnx`` from the model pack, with dynamic input dims)
takes RGB pixels 0..255 as float32 NCHW, unnormalised, at any size that is a
multiple of 32, and returns four maps at a quarter of that size (stride 4):

- heatmap (1 channel): probability that a face centre lies in the cell;
- scale (2 channels: height, width): the face box is ``4 * exp(s)`` pixels;
- offset (2 channels: y, x): sub-cell position of the centre, the centre being
  ``4 * (cell + offset + 0.5)``;
- landmarks (10 channels: y0, x0, y1, x1, ...): five points as fractions of
  the box height/width from its top-left corner, in the order left eye, right
  eye, nose tip, left mouth corner, right mouth corner as seen in the image
  (point 0 has the smaller x on an upright frontal face).

A frame is downscaled (never upscaled by default) so that its longer side is
at most ``max_side``, padded with black at the right and bottom to multiples
of 32 (the aspect ratio is kept), run once, decoded, filtered by score and
size, and thinned by greedy non-maximum suppression; coordinates are mapped
back to the original frame. Boxes and points are clipped to the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from safepassage.face.errors import ModelShapeMismatch, PipelineInputError

INPUT_NAME = "input.1"
OUTPUT_NAMES = ("537", "538", "539", "540")  # heatmap, scale, offset, landmarks
STRIDE = 4
ALIGN = 32
POINT_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")

Frame = npt.NDArray[np.uint8]
Box = tuple[float, float, float, float]


@dataclass(frozen=True, eq=False)
class Detection:
    """One face in a frame.

    ``box``: (left, top, right, bottom) in float pixels of the original frame,
    right and bottom exclusive (a box covering pixel columns 10..19 is 10.0..20.0).
    ``points``: float32 (5, 2) array of (x, y) in the same pixels, in the order of
    `POINT_NAMES`; read-only.
    """

    box: Box
    score: float
    points: npt.NDArray[np.float32]

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def iou_matrix(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Intersection over union of every box in ``a`` (n, 4) with every box in ``b`` (m, 4)."""
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 2], b[None, :, 2])
    bottom = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    result: npt.NDArray[np.float64] = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return result


def non_maximum_suppression(
    boxes: npt.NDArray[np.float64], scores: npt.NDArray[np.float64], max_iou: float
) -> npt.NDArray[np.intp]:
    """Indices of the boxes kept by greedy NMS, best score first: no two kept boxes have IoU > max_iou."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        if order.size == 1:
            break
        overlaps = iou_matrix(boxes[best : best + 1], boxes[order[1:]])[0]
        order = order[1:][overlaps <= max_iou]
    return np.asarray(keep, dtype=np.intp)


class CenterFaceDetector:
    """CenterFace on a downscaled copy of each frame; see the module docstring."""

    def __init__(
        self,
        model_path: Path,
        *,
        max_side: int = 640,
        score_threshold: float = 0.5,
        nms_iou: float = 0.3,
        min_face: float = 0.0,
        threads: int = 1,
        upscale: bool = False,
    ) -> None:
        """``max_side``: longer side of the frame the network sees, in pixels (>= 32);
        ``score_threshold``: minimum heatmap value of a face centre (0..1);
        ``nms_iou``: two kept faces never overlap by more than this IoU;
        ``min_face``: faces whose box has a shorter side below this many pixels of
        the original frame are dropped;
        ``threads``: onnxruntime intra-op threads (1 leaves the other cores to the
        rest of the pipeline);
        ``upscale``: also enlarge frames smaller than ``max_side`` (finds smaller faces, costs time).
        """
        if max_side < ALIGN:
            raise ValueError(f"max_side must be at least {ALIGN}, got {max_side}")
        if not 0.0 < score_threshold < 1.0:
            raise ValueError(f"score_threshold must lie in (0, 1), got {score_threshold}")
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must lie in (0, 1], got {nms_iou}")
        if min_face < 0 or threads < 1:
            raise ValueError(f"min_face must be >= 0 and threads >= 1, got {min_face} and {threads}")
        self.max_side = max_side
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.min_face = min_face
        self.upscale = upscale
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        inputs = [value.name for value in self.session.get_inputs()]
        outputs = {value.name for value in self.session.get_outputs()}
        if inputs != [INPUT_NAME] or not outputs.issuperset(OUTPUT_NAMES):
            raise ModelShapeMismatch(
                f"{model_path} is not a CenterFace graph: inputs {inputs}, outputs {sorted(outputs)};"
                f" expected input {INPUT_NAME!r} and outputs {list(OUTPUT_NAMES)}"
            )
        dims = self.session.get_inputs()[0].shape
        if len(dims) != 4 or any(isinstance(d, int) for d in (dims[2], dims[3])):
            raise ModelShapeMismatch(
                f"{model_path}: input dims {dims} are fixed; the model pack must hold the dynamic-shape"
                " CenterFace (safepassage.model_pack.centerface)"
            )

    def network_size(self, height: int, width: int) -> tuple[int, int, float]:
        """(resized height, resized width, scale) for a frame; the padded size rounds both up to 32."""
        scale = self.max_side / max(height, width)
        if not self.upscale:
            scale = min(scale, 1.0)
        new_height = max(1, round(height * scale))
        new_width = max(1, round(width * scale))
        return new_height, new_width, scale

    def _input(self, frame: Frame) -> tuple[npt.NDArray[np.float32], float, float]:
        height, width = frame.shape[:2]
        new_height, new_width, scale = self.network_size(height, width)
        if (new_height, new_width) != (height, width):
            interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
            frame = np.asarray(
                cv2.resize(frame, (new_width, new_height), interpolation=interpolation), dtype=np.uint8
            )
        padded_height = -(-new_height // ALIGN) * ALIGN
        padded_width = -(-new_width // ALIGN) * ALIGN
        blob = np.zeros((1, 3, padded_height, padded_width), dtype=np.float32)
        blob[0, :, :new_height, :new_width] = frame.transpose(2, 0, 1)
        return blob, new_width / width, new_height / height

    def detect(self, frame: Frame) -> list[Detection]:
        """The faces in an RGB uint8 frame (H, W, 3), best score first."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            raise PipelineInputError(
                f"a frame must be a uint8 numpy array, got {type(frame).__name__}"
                f" {getattr(frame, 'dtype', '')}"
            )
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 1 or frame.shape[1] < 1:
            raise PipelineInputError(f"a frame must have shape (H, W, 3) RGB, got {frame.shape}")
        blob, scale_x, scale_y = self._input(frame)
        heatmap, log_scale, offset, landmarks = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: blob})
        rows, cols = np.nonzero(heatmap[0, 0] > self.score_threshold)
        if rows.size == 0:
            return []
        scores = heatmap[0, 0, rows, cols].astype(np.float64)
        box_height = np.exp(log_scale[0, 0, rows, cols].astype(np.float64)) * STRIDE
        box_width = np.exp(log_scale[0, 1, rows, cols].astype(np.float64)) * STRIDE
        centre_y = (rows + offset[0, 0, rows, cols] + 0.5) * STRIDE
        centre_x = (cols + offset[0, 1, rows, cols] + 0.5) * STRIDE
        left = centre_x - box_width / 2
        top = centre_y - box_height / 2
        marks = landmarks[0][:, rows, cols].astype(np.float64)  # (10, n): y0, x0, y1, x1, ...
        points = np.empty((rows.size, 5, 2), dtype=np.float64)
        points[:, :, 0] = (left + marks[1::2] * box_width).T / scale_x
        points[:, :, 1] = (top + marks[0::2] * box_height).T / scale_y
        boxes = np.stack(
            [left / scale_x, top / scale_y, (left + box_width) / scale_x, (top + box_height) / scale_y],
            axis=1,
        )
        height, width = frame.shape[:2]
        np.clip(boxes[:, 0::2], 0.0, float(width), out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0.0, float(height), out=boxes[:, 1::2])
        np.clip(points[:, :, 0], 0.0, float(width), out=points[:, :, 0])
        np.clip(points[:, :, 1], 0.0, float(height), out=points[:, :, 1])
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        large = np.nonzero((sides >= self.min_face) & (sides > 0))[0]
        if large.size == 0:
            return []
        boxes, scores, points = boxes[large], scores[large], points[large]
        detections = []
        for index in non_maximum_suppression(boxes, scores, self.nms_iou):
            face_points = points[index].astype(np.float32)
            face_points.setflags(write=False)
            box = boxes[index]
            detections.append(
                Detection(
                    box=(float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                    score=float(scores[index]),
                    points=face_points,
                )
            )
        return detections
