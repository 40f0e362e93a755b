"""Keys for data at rest: the template key from configuration, and keys derived from it.

The full key hierarchy (per-record data keys, key-encryption keys in a KMS)
comes with protected records; for now one 32-byte key seals templates and an
HKDF-derived sibling seals index snapshots, so the two never share a key.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from safepassage.core.errors import InvalidInput
from safepassage.core.private_files import make_private_folder, read_private

log = logging.getLogger(__name__)
KEY_BYTES = 32
_MAX_KEY_FILE = 1024  # 44 base64 characters and whitespace; larger is not a key


class KeyFileError(InvalidInput):
    """A key file is missing, unreadable or not a 32-byte key."""


def _parse(data: bytes, path: Path) -> bytes:
    if len(data) == KEY_BYTES:
        return data
    try:
        decoded = base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) != KEY_BYTES:
        raise KeyFileError(f"key file {path} must hold {KEY_BYTES} raw bytes or their base64 text")
    return decoded


def load_or_create_key(path: Path, create: bool) -> bytes:
    """Read the key at `path`; create it (mode 0600) on first run when allowed.

    A key file that group or others may read is refused (PrivateFileRefused, naming the file).
    """
    if not path.exists():
        if not create:
            raise KeyFileError(f"key file {path} does not exist")
        make_private_folder(path.parent)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(base64.b64encode(os.urandom(KEY_BYTES)) + b"\n")
        log.warning(
            "generated a new template key at %s: back it up, or stored templates are lost with it", path
        )
    return _parse(read_private(path, "template key", limit=_MAX_KEY_FILE), path)


def derive_key(master: bytes, purpose: str) -> bytes:
    """A 32-byte key for one purpose, independent of the master key's other uses."""
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=f"safepassage/{purpose}/v1".encode()
    ).derive(master)
