"""Configuration -> the settings and handles the domain rooms take.

The server's typed configuration (safepassage.server.config) stops here and at the composition root:
the matcher, the face side, the enrolment service and the transparency log take their own frozen
settings values, made from the config by the functions below. The face embedder is made here too,
loading its models (ONNX from the model pack by default, dlib's as the reference). Where a setting
names a file (the witness's public key, the Milvus token, the template-protection keyring), the file
is read here, at start-up, and a missing or unreadable one refuses the start with the setting's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from safepassage import enrolment
from safepassage import face as faces
from safepassage.audit import HeadRecord, TreeHeadPublisher, WitnessClient, load_public_key
from safepassage.core.errors import FailedPrecondition
from safepassage.matcher import BatchSettings, SearchLimits, TransformKeyring
from safepassage.server.config import Config

if TYPE_CHECKING:  # pymilvus comes with the optional "milvus" extra
    from safepassage.matcher.milvus_connection import MilvusConnection

__all__ = [
    "batch_settings",
    "embedder",
    "enrolment_settings",
    "image_limits",
    "milvus_connection",
    "search_limits",
    "transform_keyring",
    "tree_head_publisher",
]


def search_limits(config: Config) -> SearchLimits:
    return SearchLimits(
        max_top_k=config.matching.max_top_k,
        max_restrict_to=config.matching.max_restrict_to,
        max_batch=config.matching.max_batch,
        max_captures=config.matching.max_captures,
    )


def batch_settings(config: Config) -> BatchSettings:
    batching = config.matching.batching
    return BatchSettings(
        enabled=batching.enabled,
        max_wait_ms=batching.max_wait_ms,
        max_batch=batching.max_batch,
        workers=batching.workers,
        threads=batching.threads,
    )


def embedder(config: Config) -> faces.Embedder:
    """The configured face embedder, its models loaded (ONNX from the model pack, or dlib)."""
    settings = config.faces
    if settings.backend == "dlib":
        return faces.DlibEmbedder(detect_max_side=settings.detection_max_side)
    if settings.backend == "onnx":
        from safepassage.face.onnx_embedder import OnnxEmbedder
        from safepassage.face.pipeline import PipelineSettings

        return OnnxEmbedder(
            PipelineSettings(
                model_dir=settings.model_dir,
                embedder=settings.embedder,
                detect_max_side=settings.onnx_detect_max_side,
                score_threshold=settings.detector_score_threshold,
                min_face=settings.min_face,
                threads=settings.threads,
            )
        )
    raise FailedPrecondition(f"unknown face backend {settings.backend!r}")


def image_limits(config: Config) -> faces.ImageLimits:
    return faces.ImageLimits(max_bytes=config.faces.max_image_bytes, max_pixels=config.faces.max_image_pixels)


def enrolment_settings(config: Config) -> enrolment.EnrolmentSettings:
    settings = config.enrolment
    return enrolment.EnrolmentSettings(
        credential_valid_days=settings.credential_valid_days,
        pin_max_failures=settings.pin_max_failures,
        pin_lock_s=settings.pin_lock_s,
        referral_readers={k: frozenset(v) for k, v in settings.referral_readers.items()},
        require_face_liveness=settings.require_face_liveness,
    )


def tree_head_publisher(config: Config) -> TreeHeadPublisher:
    """The head file (always) and the witness (when configured) of the transparency log."""
    settings = config.audit.witness
    witness = None
    if settings.url and settings.public_key_file is not None:
        try:
            witness_key = load_public_key(settings.public_key_file.read_bytes())
        except (OSError, ValueError) as error:
            raise FailedPrecondition(f"audit.witness.public_key_file: {error}") from None
        witness = WitnessClient(settings.url, witness_key, timeout_s=settings.timeout_s)
    return TreeHeadPublisher(HeadRecord(config.audit_head_path), witness, witness_required=settings.required)


def transform_keyring(config: Config) -> TransformKeyring | None:
    """The deployment's template-protection keys; None when absent and not to be made."""
    path = config.transform_keyring_path
    if config.matching.template_protection.generate_key:
        return TransformKeyring.create_if_missing(path)
    return TransformKeyring.open(path) if path.exists() else None


def milvus_connection(config: Config) -> MilvusConnection | None:
    """The Milvus connection of the milvus backend; None for FAISS in this process."""
    if config.matching.backend != "milvus":
        return None
    try:
        from safepassage.matcher.milvus_connection import MilvusConnection, MilvusSettings, MilvusTls
    except ImportError as error:
        raise FailedPrecondition(
            f"matching.backend is milvus but pymilvus is not installed ({error}); install the milvus extra"
        ) from None
    settings = config.matching.milvus
    tls = None
    if settings.tls_server_pem or settings.tls_ca_pem:
        tls = MilvusTls(
            server_pem_path=str(settings.tls_server_pem or ""),
            server_name=settings.tls_server_name,
            ca_pem_path=str(settings.tls_ca_pem or ""),
            client_pem_path=str(settings.tls_client_pem or ""),
            client_key_path=str(settings.tls_client_key or ""),
        )
    token = settings.token_file.read_text().strip() if settings.token_file else ""
    return MilvusConnection(
        MilvusSettings(
            uri=config.milvus_uri,
            token=token,
            db_name=settings.db_name,
            index_type=settings.index_type,
            index_params=settings.index_params,
            search_params=settings.search_params,
            timeout_s=settings.timeout_s,
            tls=tls,
        )
    )
