"""`safepassage audit export|verify` (safepassage.cli.audit_command), without a server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safepassage.audit import TransparencyLog, generate_signing_key, key_id, public_key_pem
from safepassage.cli.audit_command import main
from tests.audit_log.conftest import make_event
from tests.conftest import REPO


@pytest.fixture
def populated(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(log file, signing key file, public key file) of a log with 25 entries and 2 tree heads."""
    key_path = tmp_path / "log_key.pem"
    key = generate_signing_key(key_path)
    public = tmp_path / "published.pem"
    public.write_bytes(public_key_pem(key.public_key()))
    with TransparencyLog.open(tmp_path / "log.db", key) as log:
        log.append_many([make_event(i) for i in range(20)])
        log.sign_tree_head()
        log.append_many([make_event(i) for i in range(20, 25)])
        log.sign_tree_head()
    return tmp_path / "log.db", key_path, public


def test_export_then_verify(
    populated: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_path, _, public = populated
    out = tmp_path / "export"
    assert main(["audit", "export", "--log", str(log_path), "--out", str(out)]) == 0
    assert "exported 25 entries and 2 tree heads" in capsys.readouterr().out
    assert main(["audit", "verify", str(out), "--key", str(public)]) == 0
    printed = capsys.readouterr().out
    assert "audit passed: 25 entries, 2 signed tree heads" in printed
    assert "no --key given" not in printed
    assert main(["audit", "verify", str(out)]) == 0
    assert "no --key given" in capsys.readouterr().out


def test_export_with_the_signing_key_signs_first(
    populated: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_path, key_path, _ = populated
    out = tmp_path / "export"
    args = ["audit", "export", "--log", str(log_path), "--out", str(out), "--signing-key", str(key_path)]
    assert main(args) == 0
    assert "3 tree heads (newest covers 25)" in capsys.readouterr().out


def test_tampered_export_fails(
    populated: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_path, _, public = populated
    out = tmp_path / "export"
    main(["audit", "export", "--log", str(log_path), "--out", str(out)])
    kept = tmp_path / "kept_heads.jsonl"
    kept.write_bytes((out / "tree_heads.jsonl").read_bytes())
    capsys.readouterr()
    entries = out / "entries.jsonl"
    lines = entries.read_bytes().splitlines()
    entries.write_bytes(b"".join(line + b"\n" for line in lines[:7] + lines[8:]))
    assert main(["audit", "verify", str(out), "--key", str(public), "--known", str(kept)]) == 1
    err = capsys.readouterr().err
    assert "AUDIT FAILED" in err and "entry 7 was removed" in err


def test_wrong_pinned_key_fails(
    populated: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_path, _, _ = populated
    out = tmp_path / "export"
    main(["audit", "export", "--log", str(log_path), "--out", str(out)])
    other = tmp_path / "other.pem"
    stranger = Ed25519PrivateKey.generate().public_key()
    other.write_bytes(public_key_pem(stranger))
    assert main(["audit", "verify", str(out), "--key", str(other)]) == 1
    assert key_id(stranger) in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", str(tmp_path / "missing")]) == 2
    assert main(["audit", "export", "--log", str(tmp_path / "missing.db"), "--out", str(tmp_path)]) == 2
    (tmp_path / "x").mkdir()
    (tmp_path / "bad.pem").write_text("not a key")
    assert main(["audit", "verify", str(tmp_path / "x"), "--key", str(tmp_path / "bad.pem")]) == 2
    assert "error:" in capsys.readouterr().err


def test_module_entry_point(populated: tuple[Path, Path, Path], tmp_path: Path) -> None:
    log_path, _, public = populated
    out = tmp_path / "export"
    run = [sys.executable, "-m", "safepassage.cli.audit_command"]
    exported = subprocess.run(
        [*run, "audit", "export", "--log", str(log_path), "--out", str(out)], cwd=REPO, capture_output=True
    )
    assert exported.returncode == 0, exported.stderr
    verified = subprocess.run(
        [*run, "audit", "verify", str(out), "--key", str(public)], cwd=REPO, capture_output=True, text=True
    )
    assert verified.returncode == 0 and "audit passed" in verified.stdout


def test_witness_options_usage_errors_exit_2(
    populated: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_path, _, public = populated
    out = tmp_path / "export"
    main(["audit", "export", "--log", str(log_path), "--out", str(out)])
    verify = ["audit", "verify", str(out), "--key", str(public)]
    assert main([*verify, "--require-cosigned"]) == 2
    assert main([*verify, "--witness-url", "http://127.0.0.1:9"]) == 2  # which witness's key?
    witness_key = tmp_path / "witness.pem"
    witness_key.write_bytes(public_key_pem(Ed25519PrivateKey.generate().public_key()))
    # Nothing listens there: the auditor is told, not passed.
    assert main([*verify, "--witness-key", str(witness_key), "--witness-url", "http://127.0.0.1:9"]) == 2
    assert "cannot reach the witness" in capsys.readouterr().err
    # A witness key with no cosignature in the export is reported, and fails when required.
    assert main([*verify, "--witness-key", str(witness_key)]) == 0
    assert "no cosignature" in capsys.readouterr().out
    assert main([*verify, "--witness-key", str(witness_key), "--require-cosigned"]) == 1
    state = tmp_path / "witness"
    assert main(["audit", "witness", "init", "--state", str(state), "--name", "w.test"]) == 0
    assert main(["audit", "witness", "init", "--state", str(state), "--name", "w.test"]) == 2
    assert main(["audit", "witness", "serve", "--state", str(state), "--listen", "nowhere"]) == 2
    assert (
        main(["audit", "witness", "add-log", "--state", str(tmp_path / "none"), "--log-key", str(public)])
        == 2
    )
