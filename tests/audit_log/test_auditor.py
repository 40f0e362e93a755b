"""The offline audit: an untouched export passes; every kind of tampering is caught and named."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safepassage.audit import (
    AuditFailure,
    LogEvent,
    MerkleTree,
    ProofError,
    SignedTreeHead,
    TransparencyLog,
    audit,
    key_id,
    leaf_hash,
    public_key_pem,
    read_tree_heads_file,
    verify_consistency,
)
from safepassage.core.errors import DataIntegrityError
from tests.audit_log.conftest import make_event

SIZES = (10, 20, 30)  # tree heads signed along the way; the export adds one at 40
COUNT = 40


@pytest.fixture
def export(tmp_path: Path, key: Ed25519PrivateKey) -> Path:
    with TransparencyLog.open(tmp_path / "log.db", key) as log:
        for size in SIZES:
            log.append_many([make_event(i) for i in range(log.size(), size)])
            log.sign_tree_head()
        log.append_many([make_event(i) for i in range(30, COUNT)])
        log.export(tmp_path / "export")
    return tmp_path / "export"


def _edit_lines(path: Path, edit: Callable[[list[bytes]], list[bytes]]) -> None:
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"".join(line + b"\n" for line in edit(lines)))


def _entries(folder: Path, edit: Callable[[list[bytes]], list[bytes]]) -> None:
    _edit_lines(folder / "entries.jsonl", edit)


def _failure(folder: Path, **kwargs: object) -> AuditFailure:
    with pytest.raises(AuditFailure) as failed:
        audit(folder, **kwargs)  # type: ignore[arg-type]
    assert isinstance(failed.value, DataIntegrityError)
    return failed.value


def write_export(folder: Path, leaves: list[bytes], key: Ed25519PrivateKey, sizes: list[int]) -> None:
    """An export built by hand, as a forger holding ``key`` would build one."""
    folder.mkdir(parents=True, exist_ok=True)
    tree = MerkleTree(leaf_hash(data) for data in leaves)
    heads = [SignedTreeHead.sign(key, size, 1_000 + size, tree.root(size)) for size in sizes]
    (folder / "entries.jsonl").write_bytes(b"".join(data + b"\n" for data in leaves))
    (folder / "tree_heads.jsonl").write_text("".join(head.to_line() + "\n" for head in heads))
    (folder / "log_public_key.pem").write_bytes(public_key_pem(key.public_key()))


def test_untouched_export_passes(export: Path, key: Ed25519PrivateKey) -> None:
    report = audit(export, public_key=key.public_key())
    assert (report.entries, report.tree_heads, report.unsigned_entries) == (COUNT, 4, 0)
    assert report.latest.tree_size == COUNT
    assert report.key_id == key_id(key.public_key())
    assert "audit passed: 40 entries, 4 signed tree heads" in report.summary()
    # The optional locating aid may be left behind.
    (export / "leaf_hashes.txt").unlink()
    audit(export)


def _rewrite(lines: list[bytes]) -> list[bytes]:
    lines[13] = make_event(13, actor="officer:officer-0043").to_leaf()
    return lines


def _remove(lines: list[bytes]) -> list[bytes]:
    return lines[:13] + lines[14:]


def _insert(lines: list[bytes]) -> list[bytes]:
    return [*lines[:13], make_event(99).to_leaf(), *lines[13:]]


def _swap(lines: list[bytes]) -> list[bytes]:
    lines[13], lines[17] = lines[17], lines[13]
    return lines


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_rewrite, "entry 13 was altered"),
        (_remove, "entry 13 was removed"),
        (_insert, "an entry was inserted at index 13"),
        (_swap, "entries 13 and 17 were swapped"),
    ],
    ids=["rewrite", "remove", "insert", "swap"],
)
def test_changed_entries_are_named(
    export: Path, edit: Callable[[list[bytes]], list[bytes]], message: str
) -> None:
    _entries(export, edit)
    failure = _failure(export)
    assert message in str(failure)
    assert "tree head #1 (size 20)" in str(failure)
    assert (failure.index, failure.tree_head) == (13, 1)


def test_truncation_is_named(export: Path) -> None:
    _entries(export, lambda lines: lines[:35])
    failure = _failure(export)
    assert "entries from 35 on are missing" in str(failure)
    assert (failure.index, failure.tree_head) == (35, 3)


def test_truncation_mid_line_is_named(export: Path) -> None:
    path = export / "entries.jsonl"
    path.write_bytes(path.read_bytes()[:-10])
    assert "cut mid-line" in str(_failure(export))


def test_without_leaf_hashes_the_range_is_named(export: Path) -> None:
    (export / "leaf_hashes.txt").unlink()
    original = (export / "entries.jsonl").read_bytes()
    _entries(export, _rewrite)
    failure = _failure(export)
    assert "an entry in [10, 20) was rewritten, removed, inserted or reordered" in str(failure)
    assert (failure.index, failure.tree_head) == (10, 1)
    (export / "entries.jsonl").write_bytes(original)
    _entries(export, lambda lines: lines[:35])
    assert "only 35 are present" in str(_failure(export))


def test_rewritten_leaf_hashes_do_not_mislead(export: Path) -> None:
    """A forger who rewrites leaf_hashes.txt to match gains nothing: it no longer matches the roots."""
    _entries(export, _rewrite)
    forged = [leaf_hash(line).hex().encode() for line in (export / "entries.jsonl").read_bytes().splitlines()]
    _edit_lines(export / "leaf_hashes.txt", lambda _: forged)
    failure = _failure(export)
    assert "an entry in [10, 20)" in str(failure) and failure.tree_head == 1


def test_leaf_hashes_file_must_agree(export: Path) -> None:
    _edit_lines(export / "leaf_hashes.txt", lambda lines: [lines[1], lines[0], *lines[2:]])
    failure = _failure(export)
    assert "leaf_hashes.txt line 1 does not match entry 0" in str(failure)


def test_forged_tree_head_is_named(export: Path) -> None:
    def forge(lines: list[bytes]) -> list[bytes]:
        lines[2] = lines[2].replace(b'"tree_size":30', b'"tree_size":29')
        return lines

    _edit_lines(export / "tree_heads.jsonl", forge)
    failure = _failure(export)
    assert "tree head #2 is forged" in str(failure) and failure.tree_head == 2


def test_tree_head_signed_by_another_key_is_forged(export: Path, key: Ed25519PrivateKey) -> None:
    heads = read_tree_heads_file(export / "tree_heads.jsonl")
    other = Ed25519PrivateKey.generate()
    fake = SignedTreeHead.sign(other, heads[1].tree_size, heads[1].timestamp, heads[1].root_hash)
    _edit_lines(export / "tree_heads.jsonl", lambda lines: [lines[0], fake.to_line().encode(), *lines[2:]])
    assert _failure(export).tree_head == 1


def test_reordered_tree_heads_are_named(export: Path) -> None:
    _edit_lines(export / "tree_heads.jsonl", lambda lines: [lines[0], lines[2], lines[1], lines[3]])
    failure = _failure(export)
    assert "goes back" in str(failure) and failure.tree_head == 2


def test_a_forger_with_their_own_key_is_caught_by_the_pinned_key(
    export: Path, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    leaves = _rewrite((export / "entries.jsonl").read_bytes().splitlines())
    forger = Ed25519PrivateKey.generate()
    forged = tmp_path / "forged"
    write_export(forged, leaves, forger, [10, 20, 30, 40])
    audit(forged)  # self-consistent: only the key gives it away
    failure = _failure(forged, public_key=key.public_key())
    assert "not the pinned key" in str(failure)
    earlier = read_tree_heads_file(export / "tree_heads.jsonl")
    assert "is not signed by this log" in str(_failure(forged, known_heads=earlier))


def test_history_rewritten_by_the_operator_is_caught_by_kept_tree_heads(
    export: Path, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    """The operator holds the key and re-signs a rewritten log: only heads kept earlier expose it."""
    kept = audit(export).latest
    leaves = _rewrite((export / "entries.jsonl").read_bytes().splitlines())
    leaves += [make_event(i).to_leaf() for i in range(COUNT, 45)]
    rewritten = tmp_path / "rewritten"
    write_export(rewritten, leaves, key, [40, 45])
    audit(rewritten, public_key=key.public_key())
    failure = _failure(rewritten, public_key=key.public_key(), known_heads=[kept])
    assert "known tree head 0 (size 40) is not part of this log" in str(failure)


def test_kept_tree_heads_hold_for_an_honest_log(export: Path, key: Ed25519PrivateKey, tmp_path: Path) -> None:
    kept = read_tree_heads_file(export / "tree_heads.jsonl")
    with TransparencyLog.open(tmp_path / "log.db", key) as log:
        log.append_many([make_event(i) for i in range(COUNT, 55)])
        log.export(tmp_path / "later")
    report = audit(tmp_path / "later", public_key=key.public_key(), known_heads=kept)
    assert report.latest.tree_size == 55


def test_non_canonical_entry_is_named(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    leaves = [make_event(i).to_leaf() for i in range(5)]
    leaves[3] = leaves[3].replace(b'"outcome"', b' "outcome"')
    write_export(tmp_path / "x", leaves, key, [5])
    failure = _failure(tmp_path / "x")
    assert "entry 3 is not a canonical event" in str(failure) and failure.index == 3
    # A leaf with a name in it cannot be hidden inside a signed tree either.
    leaves[3] = make_event(3).to_leaf().replace(b"officer:officer-0042", b"officer:Maria Lopez")
    write_export(tmp_path / "y", leaves, key, [5])
    assert _failure(tmp_path / "y").index == 3
    LogEvent.from_leaf(leaves[2])


def test_unsigned_tail_is_reported(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    leaves = [make_event(i).to_leaf() for i in range(6)]
    write_export(tmp_path / "x", leaves, key, [2, 4])
    report = audit(tmp_path / "x")
    assert report.unsigned_entries == 2
    assert "the last 2 entries are not covered" in report.summary()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "tree_heads.jsonl").write_text(""), "holds no signed tree head"),
        (lambda f: (f / "tree_heads.jsonl").write_text('{"tree_size": 1}\n'), "line 1 is not a tree head"),
        (lambda f: (f / "log_public_key.pem").unlink(), "log_public_key.pem is missing"),
        (lambda f: (f / "entries.jsonl").unlink(), "cannot read the export"),
    ],
    ids=["no-heads", "bad-head", "no-key", "no-entries"],
)
def test_damaged_exports_fail(export: Path, damage: Callable[[Path], object], message: str) -> None:
    damage(export)
    assert message in str(_failure(export))


def test_empty_log_export_passes(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    with TransparencyLog.open(tmp_path / "log.db", key) as log:
        log.export(tmp_path / "out")
    report = audit(tmp_path / "out", public_key=key.public_key())
    assert (report.entries, report.latest.tree_size) == (0, 0)
    shutil.rmtree(tmp_path / "out")


def test_a_fork_between_two_signed_heads_is_named(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    """The operator signs size 5 over one history and size 10 over another."""
    first = [make_event(i).to_leaf() for i in range(10)]
    second = list(first)
    second[2] = make_event(2, actor="officer:officer-0043").to_leaf()
    folder = tmp_path / "fork"
    write_export(folder, first, key, [5])
    fork = SignedTreeHead.sign(key, 10, 2_000, MerkleTree(leaf_hash(x) for x in second).root())
    with (folder / "tree_heads.jsonl").open("a") as file:
        file.write(fork.to_line() + "\n")
    (folder / "leaf_hashes.txt").write_text("".join(leaf_hash(x).hex() + "\n" for x in second))
    failure = _failure(folder)
    assert "tree heads #0 and #1 disagree about entry 2: the log forked" in str(failure)
    assert (failure.index, failure.tree_head) == (2, 1)
    (folder / "leaf_hashes.txt").unlink()
    assert "or the log forked after tree head #0" in str(_failure(folder))


def test_a_tampered_head_pair_or_proof_is_caught(tmp_path: Path, key: Ed25519PrivateKey) -> None:
    """The audit's consistency between signed heads rests on the roots recomputed from the entries
    (its own proof is built from the same leaves, so it adds no evidence): a pair of validly signed
    heads that are not one history is caught there. The independent evidence is the log's own
    consistency proof between two exported heads (what a witness checks before cosigning): it
    verifies for the honest pair, and not once the proof or either head is tampered with."""
    with TransparencyLog.open(tmp_path / "log.db", key) as log:
        for size in SIZES:
            log.append_many([make_event(i) for i in range(log.size(), size)])
            log.sign_tree_head()
        log.export(tmp_path / "export")
        proof = log.consistency_proof(SIZES[0], SIZES[1])
    old, new = read_tree_heads_file(tmp_path / "export" / "tree_heads.jsonl")[:2]
    assert (old.tree_size, new.tree_size) == SIZES[:2]
    verify_consistency(old.tree_size, new.tree_size, proof, old.root_hash, new.root_hash)

    # The operator re-signs head #1 over a history in which entry 12 reads otherwise.
    leaves = (tmp_path / "export" / "entries.jsonl").read_bytes().splitlines()
    leaves[12] = make_event(12, actor="officer:officer-0043").to_leaf()
    forked = SignedTreeHead.sign(
        key, new.tree_size, new.timestamp, MerkleTree(leaf_hash(x) for x in leaves).root(new.tree_size)
    )
    tampered = bytearray(proof[0])
    tampered[0] ^= 1
    for (first, second), path in [
        ((old, forked), proof),  # a head of another history
        ((forked, new), proof),  # as old: the sizes say 20 -> 20, the roots differ
        ((old, new), [bytes(tampered), *proof[1:]]),  # a proof altered on the way
        ((old, new), proof[:-1]),  # a proof cut short
    ]:
        with pytest.raises(ProofError):
            verify_consistency(first.tree_size, second.tree_size, path, first.root_hash, second.root_hash)

    # In an export: the forked head #1 is refused by the roots recomputed from the entries.
    _edit_lines(
        tmp_path / "export" / "tree_heads.jsonl",
        lambda lines: [lines[0], forked.to_line().encode(), *lines[2:]],
    )
    failure = _failure(tmp_path / "export", public_key=key.public_key())
    assert failure.tree_head == 1 and "tree head #1 (size 20) does not match entries.jsonl" in str(failure)
    # With the entries rewritten to match it, the next signed head (size 30) no longer does: the pair
    # is a fork, named down to the entry by the log's stored leaf hashes (leaf_hashes.txt).
    _entries(tmp_path / "export", lambda lines: [*lines[:12], leaves[12], *lines[13:]])
    failure = _failure(tmp_path / "export", public_key=key.public_key())
    assert (failure.index, failure.tree_head) == (12, 2), failure
    assert "tree heads #1 and #2 disagree about entry 12: the log forked" in str(failure)
