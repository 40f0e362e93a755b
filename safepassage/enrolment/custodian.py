"""Key custody: KEK rotation and crypto-shredding.

Records are sealed under their own data keys, and the vault keeps those only
wrapped by the key-encryption key (KEK). Rotation makes a new KEK version,
rewraps every data key under it (32 bytes each; no record is re-encrypted)
and destroys the versions no longer in use.

Erasure deletes the record's wrapped key from the live vault, but a backup
taken earlier still holds it, wrapped by a KEK version that is still alive.
So every erasure also rotates: the other records move to a new version and
the old one is destroyed, after which nothing in an earlier backup can be
unwrapped, the erased record included. The cost is one unwrap and one wrap
per live record (benchmarks/records_benchmark.py measures it); the price of
a backup that outlives an erasure is that it can no longer be restored, as
it must not be (restoring it would bring the erased person back).

A version is destroyed only when no live record uses it, checked in the
vault after the rewrap, so a crash or a concurrent enrolment can delay a
destruction (the next rotation finishes it) but never lose a live record.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from safepassage.enrolment.kek import KeyEncryptionKeys
from safepassage.enrolment.record_cipher import RecordCipher
from safepassage.enrolment.vault import RecordVault

__all__ = ["KeyCustodian", "Rotation"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rotation:
    kek_version: int  # the current version afterwards
    rewrapped: int  # data keys moved to it
    destroyed: tuple[int, ...]  # versions destroyed


class KeyCustodian:
    """Rotation, rewrapping and destruction of KEK versions; one at a time."""

    def __init__(self, vault: RecordVault, keys: KeyEncryptionKeys, cipher: RecordCipher) -> None:
        self._vault = vault
        self._keys = keys
        self._cipher = cipher
        # Held by enrolment while it wraps and stores a new key, so no key is wrapped
        # under a version that is being destroyed.
        self.lock = threading.RLock()

    def rotate(self, before_destroy: Callable[[tuple[int, ...]], None] | None = None) -> Rotation:
        """New current version, every data key rewrapped under it, unused old versions destroyed.

        `before_destroy` runs after the rewrap with the versions about to be
        destroyed (erasure removes its record and signs its receipt there).
        """
        with self.lock:
            current = self._keys.rotate()
            stale = self._vault.data_keys.wrapped(not_version=current)
            rewrapped = [(record_id, self._cipher.rewrap(record_id, wrapped)) for record_id, wrapped in stale]
            self._vault.data_keys.replace(rewrapped)
            doomed = tuple(v for v in self._keys.versions() if v != current)
            if before_destroy is not None:
                before_destroy(doomed)
            destroyed = self.destroy_unused()
            log.info(
                "record keys rotated to KEK version %d: %d data keys rewrapped, versions %s destroyed",
                current,
                len(rewrapped),
                list(destroyed),
            )
            return Rotation(current, len(rewrapped), destroyed)

    def destroy_unused(self) -> tuple[int, ...]:
        """Destroy every live KEK version other than the current one that no record uses."""
        with self.lock:
            in_use = self._vault.data_keys.kek_versions_in_use()
            current = self._keys.current_version()
            destroyed = []
            for version in self._keys.versions():
                if version != current and version not in in_use:
                    self._keys.destroy(version)
                    destroyed.append(version)
            # Rewrapped rows replaced old wrapped keys: push the old pages out of the WAL too.
            self._vault.purge_journal()
            return tuple(destroyed)
