"""Probes and templates from requests: an embedding as given, or faces found in an image.

An image's decode cost is read from its header and reserved in the server's
decode budget (safepassage.server.decode_budget) before any pixel is
decompressed, and held while its pixels live: decoding and embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from safepassage import face as faces
from safepassage.api.v1 import matching_pb2 as pb
from safepassage.core.errors import FailedPrecondition, InvalidInput
from safepassage.matcher import GallerySpec
from safepassage.server.decode_budget import DecodeBudget


class EmptyProbe(InvalidInput):
    """A probe or template carries neither an embedding nor an image."""


class ModelMismatch(FailedPrecondition):
    """A gallery's model differs from the model this server embeds images with."""


@dataclass(frozen=True)
class ProbeFace:
    vector: npt.NDArray[np.float32]
    box: faces.FaceBox | None  # None for embedding probes


class ProbeReader:
    """Turns a request's Probe into vectors for one gallery."""

    def __init__(self, embedder: faces.Embedder, limits: faces.ImageLimits, budget: DecodeBudget) -> None:
        self._embedder = embedder
        self._limits = limits
        self._budget = budget

    @property
    def model(self) -> faces.EmbeddingModel:
        return self._embedder.model

    def read(
        self, probe: pb.Probe, gallery: GallerySpec, selection: faces.FaceSelection, field: str = "probe"
    ) -> list[ProbeFace]:
        kind = probe.WhichOneof("kind")
        if kind == "embedding":
            # Dimension and finiteness are checked by the matcher.
            return [ProbeFace(np.array(probe.embedding.values, dtype=np.float32), None)]
        if kind == "image":
            if gallery.model_name != self._embedder.model.name:
                raise ModelMismatch(
                    f"gallery {gallery.gallery_id!r} holds {gallery.model_name} templates;"
                    f" this server embeds images with {self._embedder.model.name}"
                )
            header = faces.read_header(probe.image, self._limits)
            with self._budget.reserve(header.decode_bytes):
                image = faces.decode_image(probe.image, self._limits)
                found = self._embedder.embed(image, selection)
                del image  # the pixels go before their reservation does
            return [ProbeFace(face.embedding, face.box) for face in found]
        raise EmptyProbe(f"{field} is empty: give an embedding or a JPEG/PNG image")
