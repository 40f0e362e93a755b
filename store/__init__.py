"""The durable source of truth: galleries and AES-GCM-sealed face templates in SQLite.

The matcher rebuilds or verifies its in-memory index from this store at
start-up: ``TemplateStore.iter_templates`` yields what to index and
``TemplateStore.state`` what the index must agree with, using
``gallery_digest``/``template_digest`` (whose definition is in store.digest).
"""

from store.database import TemplateStore
from store.digest import (
    DIGEST_SIZE,
    EMPTY_DIGEST,
    gallery_digest,
    template_digest,
    xor_digests,
)
from store.errors import (
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
)
from store.keys import KEY_SIZE
from store.probes import KeptProbe, ProbeNotFound, ProbeStore
from store.records import GalleryRecord, GalleryState, StoredTemplate
from store.schema import SCHEMA_VERSION
from store.sealing import SEAL_VERSION, TemplateSealer

__all__ = [
    "DIGEST_SIZE",
    "EMPTY_DIGEST",
    "KEY_SIZE",
    "SCHEMA_VERSION",
    "SEAL_VERSION",
    "DuplicateReference",
    "GalleryExists",
    "GalleryNotFound",
    "GalleryRecord",
    "GalleryState",
    "InvalidKey",
    "InvalidRecord",
    "InvalidTemplate",
    "KeptProbe",
    "ProbeNotFound",
    "ProbeStore",
    "ReferenceNotFound",
    "SchemaMismatch",
    "StoreClosed",
    "StoreCorrupted",
    "StoreError",
    "StoreUnavailable",
    "StoredTemplate",
    "TemplateIntegrityError",
    "TemplateSealer",
    "TemplateStore",
    "gallery_digest",
    "template_digest",
    "xor_digests",
]
