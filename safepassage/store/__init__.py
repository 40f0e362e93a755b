"""The durable source of truth: galleries and AES-GCM-sealed face templates in SQLite.

The matcher rebuilds or verifies its in-memory index from this store at
start-up: ``TemplateStore.templates.iterate`` yields what to index and
``TemplateStore.galleries.state`` what the index must agree with, using
``gallery_digest``/``template_digest`` (whose definition is in safepassage.store.digest).
``TemplateStore`` (safepassage.store.database) is the open file and its aggregates: gallery
rows (safepassage.store.galleries), template rows (safepassage.store.templates) and
quarantined rows (safepassage.store.quarantine).
Camera probes kept for review (safepassage.store.probes) and answers given on identify
streams (safepassage.store.replies) are sealed with the same key, each in a file of its own.
"""

from safepassage.store.captures import Fuse
from safepassage.store.cohort import open_cohort, seal_cohort
from safepassage.store.database import TemplateStore
from safepassage.store.digest import (
    DIGEST_SIZE,
    EMPTY_DIGEST,
    gallery_digest,
    template_digest,
    xor_digests,
)
from safepassage.store.errors import (
    DuplicateReference,
    GalleryExists,
    GalleryNotFound,
    InvalidKey,
    InvalidRecord,
    InvalidTemplate,
    ReferenceNotFound,
    SchemaMismatch,
    StoreClosed,
    StoreCorrupted,
    StoreError,
    StoreUnavailable,
    TemplateIntegrityError,
    TooManyCaptures,
)
from safepassage.store.keys import KEY_SIZE
from safepassage.store.probes import (
    HitEvidence,
    HitState,
    KeptProbe,
    ProbeNotFound,
    ProbeReview,
    ProbeStore,
    QueuedHit,
    ReviewAction,
)
from safepassage.store.records import GalleryRecord, GalleryState, StoredTemplate, SubjectChange
from safepassage.store.reference_images import ReferenceImage, ReferenceImageNotKept, ReferenceImageStore
from safepassage.store.replies import (
    REQUEST_ID,
    InvalidRequestId,
    ReplyIntegrityError,
    ReplyLedger,
    StoredReply,
    check_request_id,
)
from safepassage.store.schema import SCHEMA_VERSION
from safepassage.store.sealing import SEAL_VERSION, TemplateSealer

__all__ = [
    "DIGEST_SIZE",
    "EMPTY_DIGEST",
    "KEY_SIZE",
    "REQUEST_ID",
    "SCHEMA_VERSION",
    "SEAL_VERSION",
    "DuplicateReference",
    "Fuse",
    "GalleryExists",
    "GalleryNotFound",
    "GalleryRecord",
    "GalleryState",
    "HitEvidence",
    "HitState",
    "InvalidKey",
    "InvalidRecord",
    "InvalidRequestId",
    "InvalidTemplate",
    "KeptProbe",
    "ProbeNotFound",
    "ProbeReview",
    "ProbeStore",
    "QueuedHit",
    "ReferenceImage",
    "ReferenceImageNotKept",
    "ReferenceImageStore",
    "ReferenceNotFound",
    "ReplyIntegrityError",
    "ReplyLedger",
    "ReviewAction",
    "SchemaMismatch",
    "StoreClosed",
    "StoreCorrupted",
    "StoreError",
    "StoreUnavailable",
    "StoredReply",
    "StoredTemplate",
    "SubjectChange",
    "TemplateIntegrityError",
    "TemplateSealer",
    "TemplateStore",
    "TooManyCaptures",
    "check_request_id",
    "gallery_digest",
    "open_cohort",
    "seal_cohort",
    "template_digest",
    "xor_digests",
]
