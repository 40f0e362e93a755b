"""The pipeline's last stage: aligned face chips in, embeddings out, on ONNX Runtime.

`OnnxChipEmbedder` runs the network on chips; `safepassage.face.onnx_embedder.OnnxEmbedder`
is the image-level `Embedder` the server uses, around the whole pipeline.

Everything model-specific (input size, channel order, normalisation, layout,
output size, metric) comes from the manifest, never from inspecting the
graph; the graph is only checked against it, so a file that does not fit its
manifest is refused before it can produce wrong embeddings.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from safepassage.face.errors import ManifestError, ModelShapeMismatch, PipelineInputError
from safepassage.face.manifest import ModelEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedderSpec:
    """The embedder's part of the manifest, validated."""

    name: str
    input_size: tuple[int, int]  # width, height
    channel_order: str  # "RGB" or "BGR"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layout: str  # "NCHW" or "NHWC"
    output_dim: int
    metric: str  # "l2" or "cosine"
    default_threshold: float
    alignment: str  # "dlib_chip" or "arcface_112"
    input_name: str
    output_name: str
    chip_padding: float = 0.25

    @classmethod
    def from_entry(cls, entry: ModelEntry) -> EmbedderSpec:
        if entry.kind != "embedder":
            raise ManifestError(f"manifest entry {entry.key!r} is a {entry.kind}, not an embedder")
        try:
            spec = cls(
                name=entry.name,
                input_size=(int(entry.param("input_size")[0]), int(entry.param("input_size")[1])),
                channel_order=str(entry.param("channel_order")),
                mean=_triple(entry.param("mean")),
                std=_triple(entry.param("std")),
                layout=str(entry.param("layout")),
                output_dim=int(entry.param("output_dim")),
                metric=str(entry.param("metric")),
                default_threshold=float(entry.param("default_threshold")),
                alignment=str(entry.param("alignment")),
                input_name=str(entry.param("input_name")),
                output_name=str(entry.param("output_name")),
                chip_padding=float(entry.params.get("chip_padding", 0.25)),
            )
        except (TypeError, ValueError, IndexError) as error:
            raise ManifestError(f"manifest entry {entry.key!r} has a malformed parameter: {error}") from None
        checks = {
            "channel_order": spec.channel_order in ("RGB", "BGR"),
            "layout": spec.layout in ("NCHW", "NHWC"),
            "metric": spec.metric in ("l2", "cosine"),
            "alignment": spec.alignment in ("dlib_chip", "arcface_112"),
            "std": all(s > 0 for s in spec.std),
            "output_dim": spec.output_dim > 0,
            "input_size": min(spec.input_size) > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ManifestError(f"manifest entry {entry.key!r} has invalid params: {', '.join(bad)}")
        return spec


def _triple(values: object) -> tuple[float, float, float]:
    items = [float(v) for v in values]  # type: ignore[attr-defined]
    if len(items) != 3:
        raise ValueError(f"expected 3 values, got {len(items)}")
    return items[0], items[1], items[2]


def _dims(shape: list[int | str | None]) -> list[int | None]:
    return [d if isinstance(d, int) else None for d in shape]


class OnnxChipEmbedder:
    """Aligned face chips in, embeddings out, in batches."""

    def __init__(self, model_path: Path, spec: EmbedderSpec, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        self.spec = spec
        self._check_graph(model_path)
        self._mean = np.array(spec.mean, np.float32)
        self._scale = (1.0 / np.array(spec.std, np.float64)).astype(np.float32)

    def _check_graph(self, path: Path) -> None:
        spec = self.spec
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        if spec.input_name not in inputs or spec.output_name not in outputs:
            raise ModelShapeMismatch(
                f"{path}: the manifest names input {spec.input_name!r} and output {spec.output_name!r};"
                f" the graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}"
            )
        width, height = spec.input_size
        expected_in = [None, 3, height, width] if spec.layout == "NCHW" else [None, height, width, 3]
        found_in = _dims(inputs[spec.input_name].shape)
        found_out = _dims(outputs[spec.output_name].shape)
        if len(found_in) != 4 or any(
            f is not None and e is not None and f != e for f, e in zip(found_in, expected_in, strict=True)
        ):
            raise ModelShapeMismatch(
                f"{path}: input shape {found_in} does not fit the manifest's {expected_in}"
            )
        if len(found_out) != 2 or (found_out[1] is not None and found_out[1] != spec.output_dim):
            raise ModelShapeMismatch(
                f"{path}: output shape {found_out} does not fit the manifest's output_dim {spec.output_dim}"
            )

    def embed(self, chips: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        """(n, height, width, 3) RGB uint8 chips -> (n, output_dim) float32 embeddings."""
        width, height = self.spec.input_size
        if chips.ndim != 4 or chips.shape[1:] != (height, width, 3) or chips.dtype != np.uint8:
            raise PipelineInputError(
                f"chips must be uint8 (n, {height}, {width}, 3); got {chips.dtype} {chips.shape}"
            )
        if len(chips) == 0:
            return np.zeros((0, self.spec.output_dim), np.float32)
        pixels = chips[..., ::-1] if self.spec.channel_order == "BGR" else chips
        batch = (pixels.astype(np.float32) - self._mean) * self._scale
        if self.spec.layout == "NCHW":
            batch = batch.transpose(0, 3, 1, 2)
        (out,) = self._session.run(
            [self.spec.output_name], {self.spec.input_name: np.ascontiguousarray(batch)}
        )
        result = np.asarray(out, dtype=np.float32)
        if result.shape != (len(chips), self.spec.output_dim) or not np.isfinite(result).all():
            raise ModelShapeMismatch(
                f"embedder {self.spec.name} returned {result.shape}, not finite/expected"
            )
        return result
