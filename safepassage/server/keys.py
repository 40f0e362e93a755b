"""Keys for data at rest: the template key from configuration, and keys derived from it.

The full key hierarchy (per-record data keys, key-encryption keys in a KMS)
comes with protected records; for now one 32-byte key seals templates and an
HKDF-derived sibling seals index snapshots, so the two never share a key.
"""

from __future__ import annotations

import logging
from pathlib import Path

from safepassage.core import key_derivation, key_files
from safepassage.core.errors import InvalidInput

log = logging.getLogger(__name__)
KEY_BYTES = 32


class KeyFileError(InvalidInput):
    """A key file is missing, unreadable or not a 32-byte key."""


def load_or_create_key(path: Path, create: bool) -> bytes:
    """Read the key at `path` (32 raw bytes or their base64 text); create it (0600) on first run when allowed.

    A key file that group or others may read is refused (KeyFileError, naming the file and the chmod).
    """
    if not path.exists():
        if not create:
            raise KeyFileError(f"key file {path} does not exist")
        if key_files.create_key(path, "template key", KeyFileError, size=KEY_BYTES, text=True):
            log.warning(
                "generated a new template key at %s: back it up, or stored templates are lost with it", path
            )
    return key_files.load_key(path, "template key", KeyFileError, size=KEY_BYTES)


def derive_key(master: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose, independent of the master key's other uses."""
    return key_derivation.derive_key(master, f"safepassage/{purpose}/v1".encode())
