"""The offline audit of an exported log: everything an outside auditor checks, from files alone.

:func:`audit` trusts nothing in the folder except what the log's signatures
cover, and the public key only as far as the auditor pins it:

1. every tree head's Ed25519 signature verifies under the log's key (and
   that key is the one the auditor pinned, if any);
2. tree heads only grow: sizes and timestamps never go back;
3. every leaf hash is recomputed from ``entries.jsonl`` and the Merkle root
   at each tree head's size equals the signed root, which fixes every entry
   it covers: none rewritten, removed, inserted or reordered;
4. each tree head is consistent with the one before. This follows from 3
   (both signed roots were recomputed from the same entries) and is not a
   second, independent piece of evidence: the RFC 9162 consistency proof
   between the two heads is built from those same leaves, so it fails only
   if the Merkle proof code is wrong -- the code that also builds the
   proofs the log hands its witnesses, which is what this cross-checks. A
   fork between two signed heads is caught by 3 (and named by the locator);
5. tree heads the auditor kept from earlier audits are still consistent
   with this export (a log re-signed from scratch, or cut back together
   with its heads, passes 1-4 but not this);
6. witness cosignatures (``cosignatures.jsonl``) by the witness keys the
   auditor trusts verify, and each cosigned tree is a prefix of this
   export: a witness never cosigns a rollback or a fork, so a log rewritten
   with its own key cannot carry them. When asked, the newest tree head
   must be cosigned by every one of those witnesses;
7. every entry is a canonical LogEvent, so no free text entered the log.

On the first failure it raises :class:`AuditFailure` naming the tree head
and, where it can, the exact entry: ``leaf_hashes.txt`` is unauthenticated,
but where it reproduces a signed root it pins down which line differs and
how (altered, removed, inserted, swapped, truncated).
"""

from __future__ import annotations

import binascii
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from safepassage.audit.cosignature import Cosignature, verify_cosignature
from safepassage.audit.entry import LogEvent
from safepassage.audit.errors import AuditFailure, InvalidEvent, ProofError, SignatureError
from safepassage.audit.export import (
    COSIGNATURES_FILE,
    ENTRIES_FILE,
    LEAF_HASHES_FILE,
    PUBLIC_KEY_FILE,
    TREE_HEADS_FILE,
)
from safepassage.audit.keys import key_id, load_public_key, public_key_bytes
from safepassage.audit.merkle import MerkleTree, leaf_hash, verify_consistency
from safepassage.audit.tree_head import SignedTreeHead, verify_tree_head
from safepassage.core.signing import VerifyingKey

__all__ = ["AuditReport", "audit", "read_tree_heads_file"]


@dataclass(frozen=True)
class AuditReport:
    """What a passed audit established."""

    entries: int
    tree_heads: int
    latest: SignedTreeHead  # the newest signed head; keep it for the next audit
    key_id: str  # hex SHA-256 of the log's raw public key
    unsigned_entries: int  # entries after the newest tree head: present but not yet covered
    seconds: float
    # (witness key id, the largest tree size it cosigned here) for each witness key given
    witnessed: tuple[tuple[str, int], ...] = ()

    def summary(self) -> str:
        lines = [
            f"audit passed: {self.entries} entries, {self.tree_heads} signed tree heads",
            f"newest tree head: size {self.latest.tree_size}, timestamp {self.latest.timestamp},"
            f" root {self.latest.root_hash.hex()}",
            f"log key: {self.key_id}",
        ]
        for witness, size in self.witnessed:
            lines.append(
                f"witness {witness}: cosigned size {size}"
                if size >= 0
                else f"witness {witness}: no cosignature"
            )
        if self.unsigned_entries:
            lines.append(f"warning: the last {self.unsigned_entries} entries are not covered by a tree head")
        return "\n".join(lines)


def _lines(path: Path) -> list[bytes]:
    """The file's lines without their newlines; the file must end with one unless empty."""
    data = path.read_bytes()
    if not data:
        return []
    if not data.endswith(b"\n"):
        raise AuditFailure(f"{path.name} does not end with a newline: it was cut mid-line")
    return data[:-1].split(b"\n")


def read_tree_heads_file(path: Path) -> list[SignedTreeHead]:
    """Parse a ``tree_heads.jsonl``; AuditFailure names the first malformed line."""
    heads = []
    for number, line in enumerate(_lines(Path(path))):
        try:
            heads.append(SignedTreeHead.from_line(line))
        except ValueError as error:
            raise AuditFailure(
                f"{path.name} line {number + 1} is not a tree head: {error}", tree_head=number
            ) from None
    return heads


def _read_key(folder: Path, pinned: VerifyingKey | None) -> VerifyingKey:
    try:
        key = load_public_key((folder / PUBLIC_KEY_FILE).read_bytes())
    except (OSError, ValueError) as error:
        raise AuditFailure(f"{PUBLIC_KEY_FILE} is missing or not an Ed25519 key: {error}") from None
    if pinned is not None and public_key_bytes(pinned) != public_key_bytes(key):
        raise AuditFailure(
            f"{PUBLIC_KEY_FILE} is key {key_id(key)}, not the pinned key {key_id(pinned)}:"
            " the tree heads may have been re-signed by someone else"
        )
    return key


def _read_leaf_hashes(folder: Path) -> list[bytes] | None:
    path = folder / LEAF_HASHES_FILE
    if not path.exists():
        return None
    try:
        return [bytes.fromhex(line.decode("ascii")) for line in _lines(path)]
    except (UnicodeDecodeError, ValueError):
        return None


class _Locator:
    """Names the first bad entry below a tree head whose root did not match."""

    def __init__(self, hashes: Sequence[bytes], stored: Sequence[bytes] | None) -> None:
        self._hashes = hashes
        self._stored = stored

    def failure(self, position: int, head: SignedTreeHead, verified: int) -> AuditFailure:
        """Why ``head`` fails, given that entries ``[0, verified)`` matched the previous head."""
        size, count = head.tree_size, len(self._hashes)
        prefix = f"tree head #{position} (size {size}) does not match {ENTRIES_FILE}: "
        fork = f", or the log forked after tree head #{position - 1}" if position else ""
        stored = self._stored
        if stored is None or len(stored) < size or MerkleTree(stored[:size]).root() != head.root_hash:
            # The previous signed root fixes [0, verified), so the first change is
            # after it, unless the two signed heads themselves disagree (a fork).
            if count < size:
                return AuditFailure(
                    prefix + f"it covers {size} entries but only {count} are present"
                    f" (removed or truncated at or after entry {verified}{fork})",
                    index=verified,
                    tree_head=position,
                )
            return AuditFailure(
                prefix + f"an entry in [{verified}, {size}) was rewritten, removed, inserted or reordered"
                f"{fork} ({LEAF_HASHES_FILE} cannot narrow it down)",
                index=verified,
                tree_head=position,
            )
        # ``stored`` reproduces the signed root, so it is the signed log's leaf hashes.
        for index in range(size):
            if index >= count:
                return AuditFailure(
                    prefix + f"entries from {index} on are missing (truncated; it covers {size})",
                    index=index,
                    tree_head=position,
                )
            if self._hashes[index] != stored[index]:
                if index < verified:
                    return AuditFailure(
                        f"tree heads #{position - 1} and #{position} disagree about entry {index}:"
                        " the log forked (both are signed)",
                        index=index,
                        tree_head=position,
                    )
                return AuditFailure(prefix + self._describe(index), index=index, tree_head=position)
        # Unreachable while SHA-256 has no known collision.
        return AuditFailure(prefix + "no single entry differs", tree_head=position)

    def _describe(self, index: int) -> str:
        hashes, stored = self._hashes, self._stored
        assert stored is not None
        here = hashes[index]
        if index + 1 < len(stored) and here == stored[index + 1]:
            return f"entry {index} was removed"
        if index + 1 < len(hashes) and hashes[index + 1] == stored[index]:
            return f"an entry was inserted at index {index}"
        try:
            other = stored.index(here, index + 1)
        except ValueError:
            return f"entry {index} was altered"
        if other < len(hashes) and hashes[other] == stored[index]:
            return f"entries {index} and {other} were swapped"
        return f"entry {index} is out of order (it was entry {other})"


def audit(
    folder: Path,
    *,
    public_key: VerifyingKey | None = None,
    known_heads: Sequence[SignedTreeHead] = (),
    witness_keys: Sequence[VerifyingKey] = (),
    require_cosigned: bool = False,
) -> AuditReport:
    """Audit the export in ``folder``; returns a report or raises AuditFailure.

    ``public_key`` pins the log's key (strongly advised: without it a forger
    can ship their own key). ``known_heads`` are tree heads kept from earlier
    audits or handed out by the log; each must still hold in this export.
    ``witness_keys`` are the witnesses whose cosignatures are checked;
    ``require_cosigned`` fails the audit unless each of them cosigned the
    newest tree head.
    """
    if require_cosigned and not witness_keys:
        raise ValueError("requiring cosignatures needs at least one witness key")
    started = time.perf_counter()
    folder = Path(folder)
    key = _read_key(folder, public_key)
    try:
        entries = _lines(folder / ENTRIES_FILE)
        heads = read_tree_heads_file(folder / TREE_HEADS_FILE)
    except OSError as error:
        raise AuditFailure(f"cannot read the export: {error}") from None
    if not heads:
        raise AuditFailure(f"{TREE_HEADS_FILE} holds no signed tree head: nothing can be verified")

    hashes = [leaf_hash(data) for data in entries]
    tree = MerkleTree(hashes)
    locator = _Locator(hashes, _read_leaf_hashes(folder))

    previous: SignedTreeHead | None = None
    for position, head in enumerate(heads):
        try:
            verify_tree_head(head, key)
        except SignatureError as error:
            raise AuditFailure(f"tree head #{position} is forged: {error}", tree_head=position) from None
        if previous is not None and (
            head.tree_size < previous.tree_size or head.timestamp < previous.timestamp
        ):
            raise AuditFailure(
                f"tree head #{position} (size {head.tree_size}) goes back from #{position - 1}"
                f" (size {previous.tree_size}): tree heads were reordered or the log was rolled back",
                tree_head=position,
            )
        verified = previous.tree_size if previous is not None else 0
        if head.tree_size > tree.size or tree.root(head.tree_size) != head.root_hash:
            raise locator.failure(position, head, verified)
        if previous is not None:
            _check_consistency(tree, previous, head, f"tree heads #{position - 1} and #{position}", position)
        previous = head
    latest = heads[-1]

    for number, held in enumerate(known_heads):
        what = f"known tree head {number} (size {held.tree_size})"
        try:
            verify_tree_head(held, key)
        except SignatureError as error:
            raise AuditFailure(f"{what} is not signed by this log: {error}") from None
        if held.tree_size > tree.size:
            raise AuditFailure(
                f"{what} covers {held.tree_size} entries but the export holds {tree.size}:"
                " entries were removed since (the log was cut back)"
            )
        if tree.root(held.tree_size) != held.root_hash:
            raise AuditFailure(f"{what} is not part of this log: it was forked or rewritten since")
        if held.tree_size <= latest.tree_size:
            _check_consistency(tree, held, latest, f"{what} and the newest tree head", None)

    witnessed = _check_cosignatures(folder, tree, latest, key, witness_keys, require_cosigned)
    _check_leaf_file(folder, hashes)
    for index, data in enumerate(entries):
        try:
            LogEvent.from_leaf(data)
        except InvalidEvent as error:
            raise AuditFailure(f"entry {index} is not a canonical event: {error}", index=index) from None

    return AuditReport(
        entries=len(entries),
        tree_heads=len(heads),
        latest=latest,
        key_id=key_id(key),
        unsigned_entries=len(entries) - latest.tree_size,
        seconds=time.perf_counter() - started,
        witnessed=witnessed,
    )


def _read_cosignatures(folder: Path) -> list[Cosignature]:
    path = folder / COSIGNATURES_FILE
    if not path.exists():  # an export from before witnesses
        return []
    cosignatures = []
    for number, line in enumerate(_lines(path)):
        try:
            cosignatures.append(Cosignature.from_line(line))
        except ValueError as error:
            raise AuditFailure(
                f"{COSIGNATURES_FILE} line {number + 1} is not a cosignature: {error}"
            ) from None
    return cosignatures


def _check_cosignatures(
    folder: Path,
    tree: MerkleTree,
    latest: SignedTreeHead,
    log_key: VerifyingKey,
    witness_keys: Sequence[VerifyingKey],
    require_cosigned: bool,
) -> tuple[tuple[str, int], ...]:
    """Check the trusted witnesses' cosignatures; returns (witness key id, largest size cosigned)."""
    trusted = {key_id(witness): witness for witness in witness_keys}
    largest = dict.fromkeys(trusted, -1)
    log_id = key_id(log_key)
    for number, cosignature in enumerate(_read_cosignatures(folder)):
        witness = trusted.get(cosignature.witness_key_id)
        if witness is None:
            continue  # a witness this auditor does not trust proves nothing either way
        what = f"{COSIGNATURES_FILE} line {number + 1} (size {cosignature.tree_size})"
        try:
            verify_cosignature(cosignature, witness, log_id)
        except SignatureError as error:
            raise AuditFailure(f"{what} is forged: {error}") from None
        if cosignature.tree_size > tree.size:
            raise AuditFailure(
                f"{what}: the witness saw {cosignature.tree_size} entries but the export holds {tree.size}:"
                " entries were removed since"
            )
        if tree.root(cosignature.tree_size) != cosignature.root_hash:
            raise AuditFailure(
                f"{what}: the witness cosigned another tree at this size: the log was rewritten since"
            )
        largest[cosignature.witness_key_id] = max(largest[cosignature.witness_key_id], cosignature.tree_size)
    if require_cosigned:
        for witness_id, size in largest.items():
            if size < latest.tree_size:
                raise AuditFailure(
                    f"the newest tree head (size {latest.tree_size}) is not cosigned by witness {witness_id}"
                    + (f" (it cosigned up to size {size})" if size >= 0 else " (no cosignature at all)")
                )
    return tuple(largest.items())


def _check_consistency(
    tree: MerkleTree, old: SignedTreeHead, new: SignedTreeHead, what: str, position: int | None
) -> None:
    """A cross-check of the Merkle proof code, not independent evidence (step 4 of the module doc).

    Both signed roots were already recomputed from ``tree`` (step 3), so the proof built here
    verifies unless proof construction or verification is wrong; independent evidence of
    consistency is a proof from the log itself (`TransparencyLog.consistency_proof`), which
    witnesses verify before they cosign, and the cosignatures are checked in step 6.
    """
    proof = tree.consistency_proof(old.tree_size, new.tree_size)
    try:
        verify_consistency(old.tree_size, new.tree_size, proof, old.root_hash, new.root_hash)
    except ProofError as error:
        raise AuditFailure(f"{what} are inconsistent: {error}", tree_head=position) from None


def _check_leaf_file(folder: Path, hashes: Sequence[bytes]) -> None:
    """``leaf_hashes.txt`` is optional, but if present it must agree with the entries."""
    path = folder / LEAF_HASHES_FILE
    if not path.exists():
        return
    try:
        lines = _lines(path)
        stored = [bytes.fromhex(line.decode("ascii")) for line in lines]
    except (UnicodeDecodeError, ValueError, binascii.Error):
        raise AuditFailure(f"{LEAF_HASHES_FILE} is malformed") from None
    if len(stored) != len(hashes):
        raise AuditFailure(f"{LEAF_HASHES_FILE} lists {len(stored)} hashes for {len(hashes)} entries")
    for index, (ours, theirs) in enumerate(zip(hashes, stored, strict=True)):
        if ours != theirs:
            raise AuditFailure(
                f"{LEAF_HASHES_FILE} line {index + 1} does not match entry {index}", index=index
            )
