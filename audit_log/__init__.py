"""A tamper-evident transparency log of the service's operations (after RFC 9162).

Writing (the server)::

    key = load_or_create_signing_key(data_dir / "audit" / "log_key.pem")
    log = TransparencyLog.open(data_dir / "audit" / "log.db", key)
    log.append(LogEvent.now(caller.label, "MatchingService/Identify", gallery_id, "OK", {"faces": "1"}))
    log.sign_tree_head()            # periodically
    log.export(folder)              # for an auditor

Checking (an auditor, offline)::

    report = audit(folder, public_key=pinned_key)   # AuditFailure if anything was changed

Leaves hold ids of accounts and devices, digests, counts and enum tokens;
:class:`LogEvent` refuses anything shaped like a name, a sentence or a vector.
"""

from audit_log.auditor import AuditReport, audit, read_tree_heads_file
from audit_log.entry import LogEntry, LogEvent, pseudonym, sha256_hex
from audit_log.errors import (
    AuditFailure,
    AuditLogError,
    InvalidEvent,
    InvalidRange,
    LogClosed,
    LogCorrupted,
    LogKeyMismatch,
    LogSchemaMismatch,
    LogUnavailable,
    ProofError,
    SignatureError,
)
from audit_log.export import ExportSummary, export_log
from audit_log.keys import (
    generate_signing_key,
    key_id,
    load_or_create_signing_key,
    load_public_key,
    load_signing_key,
    public_key_pem,
)
from audit_log.log import TransparencyLog
from audit_log.merkle import (
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from audit_log.tree_head import SignedTreeHead, verify_tree_head

__all__ = [
    "AuditFailure",
    "AuditLogError",
    "AuditReport",
    "ExportSummary",
    "InvalidEvent",
    "InvalidRange",
    "LogClosed",
    "LogCorrupted",
    "LogEntry",
    "LogEvent",
    "LogKeyMismatch",
    "LogSchemaMismatch",
    "LogUnavailable",
    "MerkleTree",
    "ProofError",
    "SignatureError",
    "SignedTreeHead",
    "TransparencyLog",
    "audit",
    "consistency_proof",
    "export_log",
    "generate_signing_key",
    "inclusion_proof",
    "key_id",
    "leaf_hash",
    "load_or_create_signing_key",
    "load_public_key",
    "load_signing_key",
    "node_hash",
    "pseudonym",
    "public_key_pem",
    "read_tree_heads_file",
    "root_hash",
    "sha256_hex",
    "verify_consistency",
    "verify_inclusion",
    "verify_tree_head",
]
