"""A witness's cosignature on a tree head: "I checked this extends everything I saw of this log".

The signed bytes are those of C2SP tlog-cosignature v1 over a C2SP
tlog-checkpoint body, so the statement means the same as for any
transparency log with witnesses::

    cosignature/v1\\n
    time <seconds since the Unix epoch>\\n
    <origin>\\n                 safepassage/audit-log/<hex SHA-256 of the log's raw public key>
    <tree size>\\n              decimal
    <root hash>\\n              standard base64 of the 32-byte RFC 9162 root

A cosignature covers the tree's size and root only (not the log's own
timestamp), and names the log by its key: a witness cosigning one log's
head can never be taken as cosigning another's. Signed with the witness's
own Ed25519 key, which never sits on the log's host.

JSON form (one line of ``cosignatures.jsonl`` in an export)::

    {"witness":NAME,"witness_key_id":HEX,"timestamp":S,"tree_size":N,"sha256_root_hash":B64,"signature":B64}
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

from safepassage.audit.errors import SignatureError
from safepassage.audit.keys import key_id
from safepassage.audit.merkle import HASH_SIZE
from safepassage.audit.tree_head import SignedTreeHead, b64_field
from safepassage.core import signing
from safepassage.core.signing import SigningKey, VerifyingKey

__all__ = ["Cosignature", "checkpoint_body", "log_origin", "verify_cosignature"]

_FIELDS = ("witness", "witness_key_id", "timestamp", "tree_size", "sha256_root_hash", "signature")


def log_origin(log_key_id: str) -> str:
    """The checkpoint origin line naming one SafePassage log (by the hex id of its key)."""
    return f"safepassage/audit-log/{log_key_id}"


def checkpoint_body(log_key_id: str, tree_size: int, root_hash: bytes) -> bytes:
    """The C2SP tlog-checkpoint body for a tree of this log (no extension lines)."""
    if len(root_hash) != HASH_SIZE or tree_size < 0:
        raise ValueError("a checkpoint needs a non-negative size and a 32-byte root")
    root = base64.b64encode(root_hash).decode("ascii")
    return f"{log_origin(log_key_id)}\n{tree_size}\n{root}\n".encode("ascii")


@dataclass(frozen=True)
class Cosignature:
    """One witness's signature over (log, tree size, root) at a time of its own."""

    witness: str  # the witness's name, for people; the key id is what is checked
    witness_key_id: str  # hex SHA-256 of the witness's raw Ed25519 public key
    timestamp: int  # seconds since the Unix epoch, the witness's clock
    tree_size: int
    root_hash: bytes
    signature: bytes

    @staticmethod
    def message(log_key_id: str, timestamp: int, tree_size: int, root_hash: bytes) -> bytes:
        """The bytes a witness signs (see the module docstring)."""
        if timestamp < 0:
            raise ValueError("a cosignature time is not negative")
        return f"cosignature/v1\ntime {timestamp}\n".encode("ascii") + checkpoint_body(
            log_key_id, tree_size, root_hash
        )

    @classmethod
    def sign(
        cls, key: SigningKey, name: str, log_key_id: str, head: SignedTreeHead, now: int | None = None
    ) -> Cosignature:
        timestamp = int(time.time()) if now is None else now
        signature = signing.sign(key, cls.message(log_key_id, timestamp, head.tree_size, head.root_hash))
        return cls(name, key_id(key.public_key()), timestamp, head.tree_size, head.root_hash, signature)

    def covers(self, head: SignedTreeHead) -> bool:
        """Whether this cosigns the tree ``head`` describes (same size and root)."""
        return self.tree_size == head.tree_size and self.root_hash == head.root_hash

    def to_json(self) -> dict[str, Any]:
        return {
            "witness": self.witness,
            "witness_key_id": self.witness_key_id,
            "timestamp": self.timestamp,
            "tree_size": self.tree_size,
            "sha256_root_hash": base64.b64encode(self.root_hash).decode("ascii"),
            "signature": base64.b64encode(self.signature).decode("ascii"),
        }

    def to_line(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, obj: object) -> Cosignature:
        """Parse the JSON form; ValueError if malformed (the signature is not checked)."""
        if not isinstance(obj, dict) or set(obj) != set(_FIELDS):
            raise ValueError(f"a cosignature is a JSON object with fields {sorted(_FIELDS)}")
        for name in ("timestamp", "tree_size"):
            value = obj[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer")
        witness, witness_key_id = obj["witness"], obj["witness_key_id"]
        if not isinstance(witness, str) or not isinstance(witness_key_id, str):
            raise ValueError("witness and witness_key_id must be strings")
        root = b64_field(obj["sha256_root_hash"], "sha256_root_hash")
        if len(root) != HASH_SIZE:
            raise ValueError(f"sha256_root_hash must be {HASH_SIZE} bytes")
        signature = b64_field(obj["signature"], "signature")
        return cls(witness, witness_key_id, obj["timestamp"], obj["tree_size"], root, signature)

    @classmethod
    def from_line(cls, line: str | bytes) -> Cosignature:
        return cls.from_json(json.loads(line))


def verify_cosignature(cosignature: Cosignature, witness_key: VerifyingKey, log_key_id: str) -> None:
    """Check that ``witness_key`` cosigned this tree of the log ``log_key_id``; SignatureError if not."""
    if cosignature.witness_key_id != key_id(witness_key):
        raise SignatureError(f"the cosignature is by witness key {cosignature.witness_key_id}, not this one")
    if len(cosignature.signature) != signing.SIGNATURE_SIZE:
        raise SignatureError(
            f"a cosignature is {signing.SIGNATURE_SIZE} bytes, not {len(cosignature.signature)}"
        )
    message = Cosignature.message(
        log_key_id, cosignature.timestamp, cosignature.tree_size, cosignature.root_hash
    )
    try:
        signing.verify(witness_key, cosignature.signature, message)
    except signing.SignatureInvalid:
        raise SignatureError(
            f"the cosignature of tree size {cosignature.tree_size} does not verify for this log and witness"
        ) from None
