"""Signed tree heads: the log operator's signed statement "the log had this root at this size".

An auditor who holds one tree head can later demand a consistency proof that
the log only grew since; two tree heads for the same size with different
roots prove the operator forked the log.

What is signed (all integers big-endian)::

    b"safepassage-audit-log-tree-head\\n"   32-byte context string
    version     1 byte   (1)
    tree_size   8 bytes
    timestamp   8 bytes  milliseconds since the Unix epoch
    root_hash  32 bytes  RFC 9162 MTH of the first tree_size leaves

The context string keeps the signature from being valid for any other
message the same key might ever sign. The signature is Ed25519 (64 bytes).

JSON form (``tree_heads.jsonl`` of an export; the names follow RFC 6962's
get-sth, byte strings in standard base64)::

    {"version":1,"tree_size":N,"timestamp":MS,"sha256_root_hash":B64,"tree_head_signature":B64}
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from dataclasses import dataclass
from typing import Any

from safepassage.audit.errors import SignatureError
from safepassage.audit.merkle import HASH_SIZE
from safepassage.core import signing
from safepassage.core.signing import SigningKey, VerifyingKey

__all__ = ["TREE_HEAD_CONTEXT", "TREE_HEAD_VERSION", "SignedTreeHead", "b64_field", "verify_tree_head"]

TREE_HEAD_VERSION = 1
TREE_HEAD_CONTEXT = b"safepassage-audit-log-tree-head\n"
_FIELDS = struct.Struct(">BQQ")
_MAX_U64 = 2**64 - 1


def b64_field(value: object, what: str) -> bytes:
    """The bytes of a standard-base64 JSON field (tree heads, cosignatures); ValueError if it is not one."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ValueError(f"{what} is not valid base64") from None


@dataclass(frozen=True)
class SignedTreeHead:
    """The root of the log at one size and time, signed by the log's key."""

    tree_size: int
    timestamp: int  # milliseconds since the Unix epoch
    root_hash: bytes
    signature: bytes
    version: int = TREE_HEAD_VERSION

    @staticmethod
    def message(version: int, tree_size: int, timestamp: int, root_hash: bytes) -> bytes:
        """The bytes the signature covers (see the module docstring)."""
        if not 0 <= version <= 255 or not 0 <= tree_size <= _MAX_U64 or not 0 <= timestamp <= _MAX_U64:
            raise ValueError("tree head fields out of range")
        if len(root_hash) != HASH_SIZE:
            raise ValueError(f"a root hash is {HASH_SIZE} bytes")
        return TREE_HEAD_CONTEXT + _FIELDS.pack(version, tree_size, timestamp) + root_hash

    @classmethod
    def sign(cls, key: SigningKey, tree_size: int, timestamp: int, root_hash: bytes) -> SignedTreeHead:
        message = cls.message(TREE_HEAD_VERSION, tree_size, timestamp, root_hash)
        return cls(tree_size, timestamp, bytes(root_hash), signing.sign(key, message))

    def signed_message(self) -> bytes:
        return self.message(self.version, self.tree_size, self.timestamp, self.root_hash)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "tree_size": self.tree_size,
            "timestamp": self.timestamp,
            "sha256_root_hash": base64.b64encode(self.root_hash).decode("ascii"),
            "tree_head_signature": base64.b64encode(self.signature).decode("ascii"),
        }

    def to_line(self) -> str:
        """One line of ``tree_heads.jsonl``, without the newline."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, obj: object) -> SignedTreeHead:
        """Parse the JSON form; raises ValueError if malformed (the signature is not checked)."""
        if not isinstance(obj, dict):
            raise ValueError("a tree head must be a JSON object")
        wanted = {"version", "tree_size", "timestamp", "sha256_root_hash", "tree_head_signature"}
        if set(obj) != wanted:
            raise ValueError(f"a tree head has fields {sorted(wanted)}")
        numbers = {name: obj[name] for name in ("version", "tree_size", "timestamp")}
        for name, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        root = b64_field(obj["sha256_root_hash"], "sha256_root_hash")
        signature = b64_field(obj["tree_head_signature"], "tree_head_signature")
        if len(root) != HASH_SIZE:
            raise ValueError(f"sha256_root_hash must be {HASH_SIZE} bytes")
        return cls(numbers["tree_size"], numbers["timestamp"], root, signature, numbers["version"])

    @classmethod
    def from_line(cls, line: str | bytes) -> SignedTreeHead:
        return cls.from_json(json.loads(line))


def verify_tree_head(sth: SignedTreeHead, public_key: VerifyingKey) -> None:
    """Check the tree head's signature; raises SignatureError if it is not the log's."""
    if sth.version != TREE_HEAD_VERSION:
        raise SignatureError(f"tree head version {sth.version} is not {TREE_HEAD_VERSION}")
    if len(sth.signature) != signing.SIGNATURE_SIZE:
        raise SignatureError(
            f"a tree head signature is {signing.SIGNATURE_SIZE} bytes, not {len(sth.signature)}"
        )
    try:
        signing.verify(public_key, sth.signature, sth.signed_message())
    except signing.SignatureInvalid:
        raise SignatureError(
            f"the tree head of size {sth.tree_size} at {sth.timestamp} is not signed by this log's key"
        ) from None
