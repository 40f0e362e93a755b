"""Issue #15 finding 7: a log cut back, or rewritten and re-signed with the key beside it, is caught.

Alone, the log file agrees with itself after either (its newest remaining head
matches its entries), so an audit from nothing passes. What catches it is a
head published before: the server's head file outside the data folder (at
open), and the heads the auditor kept (``audit verify --state``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from safepassage.audit import (
    HeadRecord,
    LogCorrupted,
    LogKeyMismatch,
    LogRolledBack,
    TransparencyLog,
    TreeHeadPublisher,
    generate_signing_key,
    load_signing_key,
    public_key_pem,
    read_tree_heads_file,
)
from safepassage.cli.audit_command import main
from safepassage.core.errors import DataIntegrityError
from tests.audit_log.conftest import make_event
from tests.audit_log.tampering import rewrite_and_resign, truncate


class Deployment:
    """A log in a data folder; its key and head file in a keys folder beside it, as the server has them."""

    def __init__(self, root: Path) -> None:
        self.log_path = root / "data" / "audit" / "transparency.sqlite3"
        self.key_path = root / "data-keys" / "audit-log-ed25519.pem"
        self.head_path = root / "data-keys" / "audit-log-head.json"
        self.public_path = root / "published-log-key.pem"
        key = generate_signing_key(self.key_path)
        self.public_path.write_bytes(public_key_pem(key.public_key()))

    def open(self) -> TransparencyLog:
        publisher = TreeHeadPublisher(HeadRecord(self.head_path))
        return TransparencyLog.open(self.log_path, load_signing_key(self.key_path), publisher=publisher)

    def grow(self, to: int) -> None:
        """Append events up to ``to`` entries and sign a head over them, as the server's job does."""
        with self.open() as log:
            log.append_many([make_event(i) for i in range(log.size(), to)])
            log.publish_tree_head()


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    made = Deployment(tmp_path)
    made.grow(20)
    made.grow(30)
    return made


def test_a_log_cut_back_with_its_heads_is_refused_at_open(deployment: Deployment) -> None:
    assert HeadRecord(deployment.head_path).read() is not None
    truncate(deployment.log_path, keep=25)
    # The file agrees with itself: without the head file it opens.
    with TransparencyLog.open(deployment.log_path, load_signing_key(deployment.key_path)) as log:
        assert log.size() == 25 and log.latest_tree_head() is not None
    with pytest.raises(LogRolledBack) as refused:
        deployment.open()
    assert isinstance(refused.value, DataIntegrityError)
    assert "holds 25 entries" in str(refused.value) and "size 30" in str(refused.value)


def test_a_deleted_log_is_refused_rather_than_started_afresh(deployment: Deployment) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{deployment.log_path}{suffix}").unlink(missing_ok=True)
    with pytest.raises(LogRolledBack, match="holds 0 entries"):
        deployment.open()


def test_a_log_rewritten_and_resigned_with_its_own_key_is_refused_at_open(deployment: Deployment) -> None:
    rewrite_and_resign(deployment.log_path, deployment.key_path, index=7)
    with pytest.raises(LogRolledBack, match="not consistent with the tree head of size 30"):
        deployment.open()


def test_an_untouched_log_reopens_and_its_head_file_follows_it(deployment: Deployment) -> None:
    deployment.grow(45)
    recorded = HeadRecord(deployment.head_path).read()
    assert recorded is not None and recorded.tree_size == 45
    with deployment.open() as log:
        assert log.latest_tree_head() == recorded
        assert log.cosignatures() == []  # no witness configured
    assert deployment.head_path.stat().st_mode & 0o777 == 0o600


def test_the_head_file_never_goes_back_and_fails_closed(deployment: Deployment, tmp_path: Path) -> None:
    record = HeadRecord(deployment.head_path)
    newest = record.read()
    assert newest is not None
    with deployment.open() as log:
        older = log.tree_heads()[0]
    with pytest.raises(LogRolledBack):
        record.write(older)
    # Unreadable is not "nothing published yet".
    deployment.head_path.write_text("{not json")
    with pytest.raises(LogCorrupted, match="malformed"):
        deployment.open()
    # A head of another log (someone else's head file) is a configuration error.
    other = Deployment(tmp_path / "other")
    other.grow(3)
    deployment.head_path.write_bytes(other.head_path.read_bytes())
    with pytest.raises(LogKeyMismatch):
        deployment.open()
    record.write(newest)
    deployment.open().close()


# -- the auditor's saved state ------------------------------------------------------------


def _export(deployment: Deployment, folder: Path) -> Path:
    assert main(["audit", "export", "--log", str(deployment.log_path), "--out", str(folder)]) == 0
    return folder


def _verify(deployment: Deployment, folder: Path, *extra: str) -> int:
    return main(["audit", "verify", str(folder), "--key", str(deployment.public_path), *extra])


def test_audit_verify_with_saved_state_catches_a_cut_back_log(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "auditor" / "seen.jsonl"
    assert _verify(deployment, _export(deployment, tmp_path / "e1"), "--state", str(state)) == 0
    assert "first audit" in capsys.readouterr().out
    assert [head.tree_size for head in read_tree_heads_file(state)] == [30]

    deployment.grow(40)
    assert _verify(deployment, _export(deployment, tmp_path / "e2"), "--state", str(state)) == 0
    assert "consistent with the heads" in capsys.readouterr().out
    assert [head.tree_size for head in read_tree_heads_file(state)] == [30, 40]

    truncate(deployment.log_path, keep=33)
    cut = _export(deployment, tmp_path / "e3")
    # From nothing, the cut-back log passes: that is the gap.
    assert _verify(deployment, cut) == 0
    capsys.readouterr()
    assert _verify(deployment, cut, "--state", str(state)) == 1
    err = capsys.readouterr().err
    assert "AUDIT FAILED" in err and "covers 40 entries but the export holds 33" in err
    # A failed audit leaves the state as it was.
    assert [head.tree_size for head in read_tree_heads_file(state)] == [30, 40]


def test_audit_verify_with_saved_state_catches_a_log_rewritten_and_resigned(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "seen.jsonl"
    assert _verify(deployment, _export(deployment, tmp_path / "before"), "--state", str(state)) == 0
    rewrite_and_resign(deployment.log_path, deployment.key_path, index=12)
    rewritten = _export(deployment, tmp_path / "after")
    assert _verify(deployment, rewritten) == 0  # signed by the pinned key, consistent with itself
    capsys.readouterr()
    assert _verify(deployment, rewritten, "--state", str(state)) == 1
    assert "not part of this log: it was forked or rewritten" in capsys.readouterr().err


def test_the_state_file_is_plain_tree_heads_and_a_malformed_one_fails(
    deployment: Deployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "seen.jsonl"
    export = _export(deployment, tmp_path / "export")
    assert _verify(deployment, export, "--state", str(state)) == 0
    assert _verify(deployment, export, "--state", str(state)) == 0
    assert len(read_tree_heads_file(state)) == 1  # the same head is kept once
    line = json.loads(state.read_text())
    assert line["tree_size"] == 30
    assert _verify(deployment, export, "--known", str(state)) == 0
    state.write_text('{"tree_size": 30}\n')
    capsys.readouterr()
    assert _verify(deployment, export, "--state", str(state)) == 1
    assert "is not a tree head" in capsys.readouterr().err
