"""TemplateStore: the durable source of truth for galleries and sealed templates, one SQLite file.

The store is the open file and one attribute per aggregate, each a module of its own sharing its
connections:

    galleries   gallery rows: create, read, thresholds, calibrations, delete, state
                (safepassage.store.galleries.Galleries)
    templates   sealed template rows, one per subject: insert, rewrite, delete, read, iterate
                (safepassage.store.templates.Templates)
    captures    the captures of subjects enrolled from several, and their fusion
                (safepassage.store.captures.Captures)
    quarantine  rows kept aside, out of the index, until deleted
                (safepassage.store.quarantine.Quarantine)

Threading (see safepassage.store.connections): writes are serialised on one connection;
reads use pooled connections concurrently with them. Every method is one
transaction, so what it reads is one consistent snapshot.

Durability: a write method returns only after its COMMIT, which with WAL and
``synchronous=FULL`` has been fsynced; an acknowledged write survives ``kill -9``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

import numpy.typing as npt

from safepassage.store.captures import Captures
from safepassage.store.connections import Connections
from safepassage.store.digest import gallery_digest
from safepassage.store.galleries import Galleries
from safepassage.store.quarantine import Quarantine
from safepassage.store.schema import SCHEMA_VERSION
from safepassage.store.sealing import TemplateSealer
from safepassage.store.templates import Templates

__all__ = ["TemplateStore"]

_log = logging.getLogger(__name__)


class TemplateStore:
    """Galleries and AES-GCM-sealed face templates in one SQLite (WAL) file."""

    def __init__(self, connections: Connections, sealer: TemplateSealer) -> None:
        """Use :meth:`open`."""
        self._db = connections
        self._sealer = sealer
        self.galleries = Galleries(connections)
        self.templates = Templates(connections, sealer)
        self.captures = Captures(connections, sealer)
        self.quarantine = Quarantine(connections)

    @classmethod
    def open(cls, path: Path, sealer: TemplateSealer, *, busy_timeout: float = 5.0) -> TemplateStore:
        """Open or create the store at ``path`` (mode 0600, parents created).

        Raises SchemaMismatch if the file is newer than this code or was
        created with another key.
        """
        connections, before = Connections.open(Path(path), sealer.fingerprint, busy_timeout)
        store = cls(connections, sealer)
        _log.info(
            "opened template store %s (schema %d -> %d, %d galleries, key %s)",
            connections.path,
            before,
            SCHEMA_VERSION,
            len(store.galleries.records()),
            sealer.fingerprint.hex(),
        )
        return store

    def close(self) -> None:
        """Close every connection; later calls raise StoreClosed. Idempotent."""
        if self._db.close():
            _log.info("closed template store %s", self._db.path)

    def __enter__(self) -> TemplateStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._db.path

    @property
    def sealer(self) -> TemplateSealer:
        return self._sealer

    def checkpoint(self) -> bool:
        """Move the WAL into the main file and truncate it; False if readers deferred part of it."""
        return self._db.checkpoint()

    def content_digest(self, template_ids: npt.ArrayLike, vectors: npt.ArrayLike) -> bytes:
        """The digest ``state`` would report for exactly these templates (safepassage.store.digest)."""
        return gallery_digest(self._sealer, template_ids, vectors)
