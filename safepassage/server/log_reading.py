"""The transparency log read back for its auditors: tree heads, entries with their proofs, consistency.

AdministrationService.ListTreeHeads, ListLogEntries and GetConsistencyProof (administrators and
auditors, by the matrix). They hand out what the log stores, as stored: leaf data (hashes, counts
and ids only, audit/entry.py), signed heads and Merkle proofs, so that the auditor's own code (the
console's in-browser check, `safepassage audit verify`) decides whether to believe them. Nothing
here is trusted by that check: a wrong answer only fails it.

A filtered page of entries scans at most SCAN_LIMIT entries per call and says where it stopped
(next_start), so one call never reads the whole log.
"""

from __future__ import annotations

from safepassage.api.v1 import administration_pb2 as adpb
from safepassage.audit import InvalidRange, LogEntry, LogEvent, TransparencyLog
from safepassage.core import signing

__all__ = ["SCAN_LIMIT", "consistency_proof", "log_entries", "tree_heads"]

DEFAULT_HEADS, MAX_HEADS = 100, 1000
DEFAULT_ENTRIES, MAX_ENTRIES = 50, 500
SCAN_LIMIT = 5000
_CHUNK = 500


def tree_heads(log: TransparencyLog, request: adpb.ListTreeHeadsRequest) -> adpb.ListTreeHeadsResponse:
    heads = log.tree_heads()
    count = min(request.count or DEFAULT_HEADS, MAX_HEADS)
    page = heads[request.start : request.start + count]
    return adpb.ListTreeHeadsResponse(
        log_public_key=signing.public_bytes(log.public_key),
        tree_heads=[
            adpb.TreeHead(
                tree_size=head.tree_size,
                timestamp=head.timestamp,
                sha256_root_hash=head.root_hash,
                signature=head.signature,
                version=head.version,
            )
            for head in page
        ],
        total=len(heads),
    )


def _wanted(entry: LogEntry, request: adpb.ListLogEntriesRequest) -> bool:
    if not (request.operation or request.actor or request.outcome or request.since_ms or request.until_ms):
        return True
    event = LogEvent.from_leaf(entry.data)
    return (
        (not request.operation or event.operation == request.operation)
        and (not request.actor or event.actor == request.actor)
        and (not request.outcome or event.outcome == request.outcome)
        and (not request.since_ms or event.timestamp >= request.since_ms)
        and (not request.until_ms or event.timestamp < request.until_ms)
    )


def log_entries(log: TransparencyLog, request: adpb.ListLogEntriesRequest) -> adpb.ListLogEntriesResponse:
    """A page of entries below the tree size, each with its inclusion proof in that tree."""
    size = request.tree_size
    if not size:
        newest = log.latest_tree_head()
        size = newest.tree_size if newest is not None else 0
    if size > log.size():
        raise InvalidRange(f"the log has no tree of size {size}")
    count = min(request.count or DEFAULT_ENTRIES, MAX_ENTRIES)
    answer = adpb.ListLogEntriesResponse(tree_size=size)
    position, scanned = min(request.start, size), 0
    while position < size and len(answer.entries) < count and scanned < SCAN_LIMIT:
        chunk = log.entries(position, min(size, position + _CHUNK))
        for entry in chunk:
            position, scanned = entry.index + 1, scanned + 1
            if _wanted(entry, request):
                answer.entries.append(
                    adpb.LogEntry(
                        index=entry.index,
                        leaf_data=entry.data,
                        inclusion_proof=log.inclusion_proof(entry.index, size),
                    )
                )
            if len(answer.entries) >= count or scanned >= SCAN_LIMIT:
                break
    answer.next_start = position
    return answer


def consistency_proof(
    log: TransparencyLog, request: adpb.GetConsistencyProofRequest
) -> adpb.GetConsistencyProofResponse:
    if request.second > log.size():
        raise InvalidRange(f"the log has no tree of size {request.second}")
    return adpb.GetConsistencyProofResponse(proof=log.consistency_proof(request.first, request.second))
