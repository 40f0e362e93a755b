"""The witness: cosigns a log's heads while the log only grows; refuses rollbacks, forks and forgeries."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safepassage.audit import (
    Cosignature,
    SignatureError,
    SignedTreeHead,
    TransparencyLog,
    UnknownLog,
    Witness,
    WitnessClient,
    WitnessConflict,
    WitnessRefused,
    WitnessUnavailable,
    generate_signing_key,
    key_id,
    load_public_key,
    public_key_pem,
    verify_cosignature,
)
from safepassage.audit.witness import LOGS_FOLDER
from safepassage.core.errors import DataIntegrityError, FailedPrecondition, Unavailable
from tests.audit_log.conftest import make_event
from tests.audit_log.witness_process import WitnessProcess, make_witness


def _grow(log: TransparencyLog, to: int) -> SignedTreeHead:
    log.append_many([make_event(i) for i in range(log.size(), to)])
    return log.sign_tree_head()


@pytest.fixture
def witness(tmp_path: Path) -> Witness:
    return Witness.create(tmp_path / "witness", "witness.test")


def test_cosignature_message_is_c2sp_tlog_cosignature_v1(key: Ed25519PrivateKey) -> None:
    root = bytes(range(32))
    head = SignedTreeHead.sign(key, 25, 1_700_000_000_000, root)
    log_id = key_id(key.public_key())
    witness_key = Ed25519PrivateKey.generate()
    cosignature = Cosignature.sign(witness_key, "witness.test", log_id, head, now=1_700_000_123)
    expected = (
        f"cosignature/v1\ntime 1700000123\nsafepassage/audit-log/{log_id}\n25\n"
        f"{base64.b64encode(root).decode()}\n"
    ).encode()
    assert Cosignature.message(log_id, 1_700_000_123, 25, root) == expected
    witness_key.public_key().verify(cosignature.signature, expected)
    verify_cosignature(cosignature, witness_key.public_key(), log_id)
    assert Cosignature.from_line(cosignature.to_line()) == cosignature
    # Bound to the log and the witness: not valid for another of either.
    with pytest.raises(SignatureError):
        verify_cosignature(cosignature, witness_key.public_key(), "0" * 64)
    with pytest.raises(SignatureError):
        verify_cosignature(cosignature, Ed25519PrivateKey.generate().public_key(), log_id)


def test_witness_cosigns_growth_and_refuses_rollback_fork_and_forgery(
    witness: Witness, log: TransparencyLog, tmp_path: Path, key: Ed25519PrivateKey
) -> None:
    log_id = witness.add_log(log.public_key)
    assert log_id == log.key_id and witness.logs() == [log_id]
    assert witness.latest(log_id) is None
    h10 = _grow(log, 10)
    verify_cosignature(witness.add(log_id, 0, [], h10), witness.public_key, log_id)
    h25 = _grow(log, 25)
    cosigned = witness.add(log_id, 10, log.consistency_proof(10, 25), h25)
    assert cosigned.covers(h25)
    seen = witness.latest(log_id)
    assert seen is not None and seen.tree_head == h25

    # A rollback: refused whichever size the sender claims to prove from.
    with pytest.raises(WitnessRefused, match="rolled back") as refused:
        witness.add(log_id, 25, [], h10)
    assert isinstance(refused.value, DataIntegrityError)
    with pytest.raises(WitnessConflict) as conflict:
        witness.add(log_id, 10, [], h10)
    assert conflict.value.tree_size == 25 and isinstance(conflict.value, FailedPrecondition)

    # The same tree again (a head signed later with no new entries): cosigned, nothing recorded.
    records = witness.folder / LOGS_FOLDER / f"{log_id}.jsonl"
    before = records.read_bytes()
    assert witness.add(log_id, 25, [], log.sign_tree_head()).covers(h25)
    assert records.read_bytes() == before

    # A fork: a log rewritten from entry 20 on and re-signed with the very same key.
    with TransparencyLog.open(tmp_path / "fork.db", key) as fork:
        fork.append_many([make_event(i) for i in range(20)])
        fork.append_many([make_event(i, actor="system") for i in range(20, 30)])
        forked = fork.sign_tree_head()
        with pytest.raises(WitnessRefused, match="not consistent with size 25"):
            witness.add(log_id, 25, fork.consistency_proof(25, 30), forked)

    # Not the log's signature; a log it was never given; an id that is not one.
    stranger = Ed25519PrivateKey.generate()
    forged = SignedTreeHead.sign(stranger, 30, h25.timestamp, forked.root_hash)
    with pytest.raises(WitnessRefused, match="not signed by log"):
        witness.add(log_id, 25, [], forged)
    with pytest.raises(UnknownLog):
        witness.add(key_id(stranger.public_key()), 0, [], forged)
    with pytest.raises(UnknownLog):
        witness.latest("../../" + log_id)

    # What it saw survives a restart.
    reopened = Witness.open(witness.folder)
    seen = reopened.latest(log_id)
    assert seen is not None and seen.tree_head == h25 and reopened.key_id == witness.key_id


def test_a_torn_last_record_was_never_answered_and_is_dropped(witness: Witness, log: TransparencyLog) -> None:
    log_id = witness.add_log(log.public_key)
    h5 = _grow(log, 5)
    witness.add(log_id, 0, [], h5)
    records = witness.folder / LOGS_FOLDER / f"{log_id}.jsonl"
    with records.open("ab") as file:
        file.write(b'{"tree_head": {"tree_si')  # the power went mid-append
    seen = witness.latest(log_id)
    assert seen is not None and seen.tree_head == h5
    h9 = _grow(log, 9)
    witness.add(log_id, 5, log.consistency_proof(5, 9), h9)
    assert records.read_bytes().count(b"\n") == 2 and records.read_bytes().endswith(b"\n")


def test_the_witness_is_a_trust_domain_of_its_own(witness: Witness) -> None:
    assert witness.folder.stat().st_mode & 0o777 == 0o700
    assert (witness.folder / "witness-ed25519.pem").stat().st_mode & 0o777 == 0o600
    public = load_public_key((witness.folder / "witness-public.pem").read_bytes())
    assert key_id(public) == witness.key_id
    with pytest.raises(FileExistsError):  # never replaces its key, so never forgets who it is
        Witness.create(witness.folder, "another")
    with pytest.raises(ValueError):
        Witness.create(witness.folder.parent / "bad", "has spaces")


def test_witness_process_over_http(tmp_path: Path) -> None:
    log_key = generate_signing_key(tmp_path / "keys" / "log.pem")
    (tmp_path / "log.pem").write_bytes(public_key_pem(log_key.public_key()))
    witness_pem = make_witness(tmp_path / "witness", "witness.test", tmp_path / "log.pem")
    witness_key = load_public_key(witness_pem.read_bytes())
    process = WitnessProcess(tmp_path / "witness")
    try:
        client = WitnessClient(process.url, witness_key, timeout_s=30)
        with TransparencyLog.open(tmp_path / "data" / "log.db", log_key) as log:
            assert client.latest(log.public_key) is None
            h12 = _grow(log, 12)
            verify_cosignature(client.add(log.key_id, 0, [], h12), witness_key, log.key_id)
            h20 = _grow(log, 20)
            client.add(log.key_id, 12, log.consistency_proof(12, 20), h20)
            seen = client.latest(log.public_key)
            assert seen is not None and seen.tree_head == h20

            with pytest.raises(WitnessRefused, match="rolled back"):
                client.add(log.key_id, 20, [], h12)
            with pytest.raises(WitnessConflict) as conflict:
                client.add(log.key_id, 12, [], h12)
            assert conflict.value.tree_size == 20
            with pytest.raises(WitnessRefused, match="not consistent"):
                client.add(
                    log.key_id,
                    20,
                    log.consistency_proof(12, 20),
                    SignedTreeHead.sign(log_key, 21, h20.timestamp, h12.root_hash),
                )
            with pytest.raises(UnknownLog):
                client.latest(Ed25519PrivateKey.generate().public_key())
            # An answer signed by another witness than the one configured is not taken.
            impostor = WitnessClient(process.url, Ed25519PrivateKey.generate().public_key())
            with pytest.raises(WitnessRefused, match="not the configured witness"):
                impostor.latest(log.public_key)
    finally:
        assert process.stop() == 0
    with pytest.raises(WitnessUnavailable) as down:
        client.latest(log_key.public_key())
    assert isinstance(down.value, Unavailable)
