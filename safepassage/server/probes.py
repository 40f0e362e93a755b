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
    crop: bytes | None = None  # a reference image (JPEG face crop), when asked for and made from an image


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
        self,
        probe: pb.Probe,
        gallery: GallerySpec,
        selection: faces.FaceSelection,
        field: str = "probe",
        *,
        crop: bool = False,
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
            return self.read_image(probe.image, selection, crop=crop)
        raise EmptyProbe(f"{field} is empty: give an embedding or a JPEG/PNG image")

    def read_image(
        self, data: bytes, selection: faces.FaceSelection, *, crop: bool = False
    ) -> list[ProbeFace]:
        """The faces in encoded image bytes (a probe's, or a travel document's portrait); with `crop`,
        each with its reference image (faces.reference_crop), cut while the pixels live."""
        header = faces.read_header(data, self._limits)
        with self._budget.reserve(header.decode_bytes):
            image = faces.decode_image(data, self._limits)
            found = self._embedder.embed(image, selection)
            crops = [faces.reference_crop(image, face.box) if crop else None for face in found]
            del image  # the pixels go before their reservation does
        return [ProbeFace(face.embedding, face.box, made) for face, made in zip(found, crops, strict=True)]
