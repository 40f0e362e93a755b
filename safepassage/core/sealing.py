"""Authenticated encryption at rest: AES-256-GCM, and the one versioned envelope sealed blobs use.

As pyca/cryptography keeps Fernet over its hazmat layer, this module keeps the recipe: callers say
what they seal and what it is bound to; nonces, tags, the header and every check on opening are
here, once. :class:`Aead` is the bare primitive (random 96-bit nonces, ``nonce || ciphertext+tag``)
for formats that frame their own chunks. :class:`Envelope` is a sealed-blob format::

    offset  size  field
    0       1     format version
    1       k     key id: names the key without revealing it (a fingerprint, a key check, a version)
    1+k     12    random nonce
    13+k    n+16  AES-256-GCM ciphertext of the n plaintext bytes, then the tag

with associated data ``label || header (if bound) || context``: the label separates domains, the
header (version and key id) is authenticated where the format binds it, and the context binds the
blob to where it is kept (row, record, entry), so a blob moved elsewhere fails to open. Each format
on disk is one instance, reading and writing the very bytes it always did (tests/core holds
known-answer vectors): the store's templates and stream answers and the edge outbox (8-byte
fingerprint, header bound), record parts (8-byte key check, header not bound: the label carries the
version), KEK-wrapped data keys (4-byte KEK version, header bound after a label).

Opening raises, never returns a sentinel: the format's ``wrong_key`` error when the key id differs
(a wrong key reported as such, not as tampering), its ``damaged`` error for a value that is not
bytes, truncated, of another version, altered or moved. Random nonces keep AES-GCM within its
bounds for 2**32 seals per key.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from safepassage.core.errors import DataIntegrityError, SafePassageError

__all__ = ["KEY_SIZE", "NONCE_SIZE", "TAG_SIZE", "Aead", "AuthenticationFailed", "Envelope", "SealingKey"]

KEY_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16


class AuthenticationFailed(DataIntegrityError):
    """A ciphertext failed to authenticate: altered, or opened under another key or associated data."""


class Aead:
    """AES-256-GCM under one 32-byte key; thread-safe (it holds only the key schedule)."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes) or len(key) != KEY_SIZE:
            raise ValueError(f"an AES-256-GCM key must be {KEY_SIZE} bytes")
        self._aead = AESGCM(key)

    @staticmethod
    def generate_key() -> bytes:
        """A fresh random 32-byte key from the OS CSPRNG."""
        return os.urandom(KEY_SIZE)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """``nonce || ciphertext+tag`` under a random nonce."""
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes) -> bytes:
        """The plaintext of ``seal``'s output; AuthenticationFailed (also when too short to hold a tag)."""
        return self.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], aad)

    def encrypt(self, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """``ciphertext+tag`` under a nonce the caller's format fixes (each such key seals once)."""
        return self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """The plaintext; AuthenticationFailed for anything that does not authenticate."""
        if len(nonce) != NONCE_SIZE or len(ciphertext) < TAG_SIZE:
            raise AuthenticationFailed("the ciphertext is truncated")
        try:
            return self._aead.decrypt(nonce, ciphertext, aad)
        except InvalidTag:
            raise AuthenticationFailed("authentication failed") from None


@dataclass(frozen=True)
class Envelope:
    """One sealed-blob format, and how its failures are reported (in the owner's words and errors).

    ``key_name`` names the key in messages ("device key"); ``binding`` what a moved blob came from
    ("entry"); ``show_key_ids`` puts both key ids in a wrong-key message (off where the id is
    derived from a per-record key and the message may travel further than the blob).
    """

    version: int
    key_id_size: int
    damaged: type[SafePassageError]
    wrong_key: type[SafePassageError]
    label: bytes = b""
    bind_header: bool = True
    key_name: str = "key"
    binding: str = "place"
    show_key_ids: bool = True

    @property
    def header_size(self) -> int:
        return 1 + self.key_id_size

    @property
    def overhead(self) -> int:
        """Bytes a sealed blob adds to its plaintext."""
        return self.header_size + NONCE_SIZE + TAG_SIZE

    def check(self, blob: object, where: str) -> bytes:
        """``blob`` if it is a byte string long enough to be of this version; ``damaged`` otherwise."""
        if not isinstance(blob, bytes):
            raise self.damaged(f"{where}: sealed value is not a byte string")
        if len(blob) < self.overhead:
            raise self.damaged(f"{where}: sealed blob is truncated")
        if blob[0] != self.version:
            raise self.damaged(f"{where}: unknown sealing version {blob[0]}")
        return blob

    def key_id(self, blob: bytes) -> bytes:
        """The key id in the header of a checked blob."""
        return blob[1 : self.header_size]


class SealingKey:
    """One key sealing and opening blobs of one :class:`Envelope`; thread-safe, ``repr`` hides the key."""

    __slots__ = ("_aead", "_header", "envelope", "key_id")

    def __init__(self, envelope: Envelope, key: bytes, key_id: bytes) -> None:
        if len(key_id) != envelope.key_id_size:
            raise ValueError(f"this envelope's key id is {envelope.key_id_size} bytes")
        self.envelope = envelope
        self.key_id = key_id
        self._aead = Aead(key)
        self._header = bytes([envelope.version]) + key_id

    def __repr__(self) -> str:
        return f"SealingKey(version={self.envelope.version}, key_id={self.key_id.hex()})"

    def _aad(self, context: bytes) -> bytes:
        bound = self._header if self.envelope.bind_header else b""
        return self.envelope.label + bound + context

    def seal(self, plaintext: bytes, context: bytes = b"") -> bytes:
        """``version || key id || nonce || ciphertext+tag``, bound to ``context``."""
        return self._header + self._aead.seal(bytes(plaintext), self._aad(context))

    def check(self, blob: object, where: str) -> bytes:
        """``blob`` if it is a well-formed blob of this envelope under this key (nothing decrypted)."""
        envelope = self.envelope
        sealed = envelope.check(blob, where)
        found = envelope.key_id(sealed)
        if not hmac.compare_digest(found, self.key_id):
            if envelope.show_key_ids:
                raise envelope.wrong_key(
                    f"{where}: sealed under another {envelope.key_name}; the key does not match the one"
                    f" that sealed it (key id {found.hex()}, this key {self.key_id.hex()})"
                )
            raise envelope.wrong_key(f"{where}: sealed under another {envelope.key_name} than the one given")
        return sealed

    def open(self, blob: object, context: bytes = b"", *, where: str = "sealed value") -> bytes:
        """The plaintext of a blob sealed under this key for ``context``; raises, never returns garbage."""
        sealed = self.check(blob, where)
        try:
            return self._aead.open(sealed[self.envelope.header_size :], self._aad(context))
        except AuthenticationFailed:
            raise self.envelope.damaged(
                f"{where}: authentication failed (altered, or moved from another {self.envelope.binding})"
            ) from None
