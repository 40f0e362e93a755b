"""A tamper-evident transparency log of the service's operations (after RFC 9162).

Writing (the server)::

    key = load_or_create_signing_key(data_dir / "audit" / "log_key.pem")
    log = TransparencyLog.open(data_dir / "audit" / "log.db", key)
    log.append(LogEvent.now(caller.label, "MatchingService/Identify", gallery_id, "OK", {"faces": "1"}))
    log.sign_tree_head()            # periodically
    log.export(folder)              # for an auditor

Publishing (the server): a head file outside the data folder and a witness
that cosigns only heads extending the ones it saw; the log refuses to open
when it is shorter than, or inconsistent with, either::

    publisher = TreeHeadPublisher(HeadRecord(keys_dir / "audit-log-head.json"),
                                  WitnessClient(url, witness_public_key))
    log = TransparencyLog.open(path, key, publisher=publisher)   # LogRolledBack if cut or rewritten
    log.publish_tree_head()         # signed, recorded, cosigned; the cosignature kept in the log

Witnessing (another host): ``Witness.create(folder, name)``, ``add_log(log_public_key)``,
then ``WitnessServer(witness, host, port).serve_forever()``.

Checking (an auditor, offline)::

    state = AuditorState(my_state_file)
    report = audit(folder, public_key=pinned_key, known_heads=state.heads(),
                   witness_keys=[witness_key], require_cosigned=True)   # AuditFailure if changed
    state.remember(report.latest)

Leaves hold ids of accounts and devices, digests, counts and enum tokens;
:class:`LogEvent` refuses anything shaped like a name, a sentence or a vector.
"""

from safepassage.audit.auditor import AuditReport, audit, read_tree_heads_file
from safepassage.audit.auditor_state import AuditorState
from safepassage.audit.cosignature import Cosignature, verify_cosignature
from safepassage.audit.entry import LogEntry, LogEvent, pseudonym, sha256_hex
from safepassage.audit.errors import (
    AuditFailure,
    AuditLogError,
    InvalidEvent,
    InvalidRange,
    LogClosed,
    LogCorrupted,
    LogKeyMismatch,
    LogRolledBack,
    LogSchemaMismatch,
    LogUnavailable,
    ProofError,
    SignatureError,
    UnknownLog,
    WitnessConflict,
    WitnessRefused,
    WitnessUnavailable,
)
from safepassage.audit.export import ExportSummary, export_log
from safepassage.audit.head_record import HeadRecord
from safepassage.audit.keys import (
    generate_signing_key,
    key_id,
    load_or_create_signing_key,
    load_public_key,
    load_signing_key,
    public_key_pem,
)
from safepassage.audit.log import TransparencyLog
from safepassage.audit.merkle import (
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)
from safepassage.audit.publisher import TreeHeadPublisher
from safepassage.audit.tree_head import SignedTreeHead, verify_tree_head
from safepassage.audit.witness import Witness, Witnessed
from safepassage.audit.witness_http import WitnessClient, WitnessServer

__all__ = [
    "AuditFailure",
    "AuditLogError",
    "AuditReport",
    "AuditorState",
    "Cosignature",
    "ExportSummary",
    "HeadRecord",
    "InvalidEvent",
    "InvalidRange",
    "LogClosed",
    "LogCorrupted",
    "LogEntry",
    "LogEvent",
    "LogKeyMismatch",
    "LogRolledBack",
    "LogSchemaMismatch",
    "LogUnavailable",
    "MerkleTree",
    "ProofError",
    "SignatureError",
    "SignedTreeHead",
    "TransparencyLog",
    "TreeHeadPublisher",
    "UnknownLog",
    "Witness",
    "WitnessClient",
    "WitnessConflict",
    "WitnessRefused",
    "WitnessServer",
    "WitnessUnavailable",
    "Witnessed",
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
    "verify_cosignature",
    "verify_inclusion",
    "verify_tree_head",
]
