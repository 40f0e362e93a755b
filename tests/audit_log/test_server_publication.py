"""The server publishes its tree heads (head file, witness) and refuses a log that went back.

Real servers (create_server, mutual TLS), a real witness process, real SQLite
files and keys. The intruder holds the data folder, and in the witness tests
the keys folder too: the log key and the head file beside it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.audit import (
    HeadRecord,
    LogRolledBack,
    TransparencyLog,
    WitnessClient,
    WitnessRefused,
    WitnessUnavailable,
    generate_signing_key,
    key_id,
    load_public_key,
    load_signing_key,
    public_key_pem,
)
from safepassage.cli.audit_command import main
from safepassage.server.config import Config
from tests.audit_log.tampering import rewrite_and_resign, truncate
from tests.audit_log.witness_process import WitnessProcess, make_witness

pytestmark = pytest.mark.server

StartServer = Callable[..., tuple[Any, int, Config]]


def _entries(config: Config) -> int:
    conn = sqlite3.connect(config.audit_log_path)
    try:
        return int(conn.execute("SELECT count(*) FROM leaves").fetchone()[0])
    finally:
        conn.close()


def _serve_a_while(start: StartServer, clients_for: Any, data: Path, **overrides: object) -> Config:
    """Start a server, make logged calls around one published head, stop it (which publishes one more)."""
    service, port, config = start(data, **overrides)
    admin = clients_for(port).admin.galleries
    admin.ListGalleries(pb.ListGalleriesRequest(), timeout=30)
    service.transparency_log.publish_tree_head()
    for _ in range(3):
        admin.ListGalleries(pb.ListGalleriesRequest(), timeout=30)
    service.stop(grace_s=1)
    return config


def test_the_server_refuses_to_start_on_a_truncated_log(
    server_factory: StartServer, clients_for: Any, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = _serve_a_while(server_factory, clients_for, data)
    published = HeadRecord(config.audit_head_path).read()
    assert published is not None and published.tree_size == _entries(config) >= 4
    assert not config.audit_head_path.is_relative_to(data)  # kept outside the data folder

    truncate(config.audit_log_path, keep=published.tree_size - 2)
    with pytest.raises(LogRolledBack, match=f"tree head of size {published.tree_size}"):
        server_factory(data)


@dataclass
class WitnessedDeployment:
    witness: WitnessProcess
    witness_pem: Path
    log_key_path: Path
    log_public_pem: Path

    def overrides(self, required: bool = True) -> dict[str, object]:
        return {
            "audit.key_file": str(self.log_key_path),
            "audit.witness.url": self.witness.url,
            "audit.witness.public_key_file": str(self.witness_pem),
            "audit.witness.required": required,
        }

    def client(self) -> WitnessClient:
        return WitnessClient(self.witness.url, load_public_key(self.witness_pem.read_bytes()))


@pytest.fixture
def witnessed(tmp_path: Path) -> Iterator[WitnessedDeployment]:
    """A log key of the operator's choosing (audit.key_file), and a witness of that log in its own process."""
    key_path = tmp_path / "operator-keys" / "transparency-log.pem"
    key = generate_signing_key(key_path)
    public = tmp_path / "transparency-log-public.pem"
    public.write_bytes(public_key_pem(key.public_key()))
    # The witness's host: its own key and state folder, nowhere near the server's.
    state = tmp_path / "witness-host" / "state"
    witness_pem = make_witness(state, "witness.test", public)
    process = WitnessProcess(state)
    try:
        yield WitnessedDeployment(process, witness_pem, key_path, public)
    finally:
        assert process.stop() == 0


def test_heads_are_cosigned_by_the_witness_and_an_auditor_verifies_them(
    server_factory: StartServer,
    clients_for: Any,
    witnessed: WitnessedDeployment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "data"
    config = _serve_a_while(server_factory, clients_for, data, **witnessed.overrides())
    assert config.audit_key_path == witnessed.log_key_path
    seen = witnessed.client().latest(load_public_key(witnessed.log_public_pem.read_bytes()))
    assert seen is not None and seen.tree_head.tree_size == _entries(config)
    with TransparencyLog.open(config.audit_log_path, load_signing_key(witnessed.log_key_path)) as log:
        cosignatures = log.cosignatures()
    assert [c.tree_size for c in cosignatures] == sorted(c.tree_size for c in cosignatures)
    assert len(cosignatures) == 2 and cosignatures[-1].covers(seen.tree_head)

    export = tmp_path / "export"
    assert main(["audit", "export", "--log", str(config.audit_log_path), "--out", str(export)]) == 0
    state = tmp_path / "auditor-state.jsonl"
    verify = [
        "audit", "verify", str(export), "--key", str(witnessed.log_public_pem),
        "--state", str(state), "--witness-key", str(witnessed.witness_pem),
    ]  # fmt: skip
    assert main([*verify, "--require-cosigned", "--witness-url", witnessed.witness.url]) == 0
    out = capsys.readouterr().out
    witness_id = key_id(load_public_key(witnessed.witness_pem.read_bytes()))
    assert f"witness {witness_id}: cosigned size {seen.tree_head.tree_size}" in out
    # Cosignatures by a witness the auditor does not trust count for nothing.
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(public_key_pem(generate_signing_key(tmp_path / "stranger-key.pem").public_key()))
    assert main([*verify[:-1], str(stranger), "--require-cosigned"]) == 1
    assert "not cosigned by witness" in capsys.readouterr().err

    # The untouched log starts again, checked against the witness.
    service, _, _ = server_factory(data, **witnessed.overrides())
    service.stop(grace_s=1)


def test_a_log_rewritten_and_resigned_with_the_key_beside_it_is_caught_by_the_witness(
    server_factory: StartServer,
    clients_for: Any,
    witnessed: WitnessedDeployment,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "data"
    config = _serve_a_while(server_factory, clients_for, data, **witnessed.overrides())
    witnessed_size = _entries(config)
    # The intruder holds both folders: rewrites entry 1, re-signs, and rewrites the head file to match.
    rewrite_and_resign(config.audit_log_path, config.audit_key_path, index=1)
    config.audit_head_path.unlink()
    with TransparencyLog.open(config.audit_log_path, load_signing_key(config.audit_key_path)) as log:
        resigned = log.sign_tree_head()
        HeadRecord(config.audit_head_path).write(resigned)
        # The witness refuses the re-signed head: it does not extend what it cosigned.
        with pytest.raises(WitnessRefused, match="not consistent"):
            witnessed.client().add(
                log.key_id,
                witnessed_size,
                log.consistency_proof(witnessed_size, resigned.tree_size),
                resigned,
            )
    # The server refuses to start on it: the witness remembers.
    with pytest.raises(LogRolledBack, match="the witness at"):
        server_factory(data, **witnessed.overrides())
    # An auditor with no saved state of its own catches it by asking the witness.
    export = tmp_path / "export"
    assert main(["audit", "export", "--log", str(config.audit_log_path), "--out", str(export)]) == 0
    verify = ["audit", "verify", str(export), "--key", str(witnessed.log_public_pem)]
    assert main(verify) == 0  # re-signed with the log's own key, consistent with itself
    capsys.readouterr()
    assert (
        main([*verify, "--witness-key", str(witnessed.witness_pem), "--witness-url", witnessed.witness.url])
        == 1
    )
    assert "forked or rewritten" in capsys.readouterr().err
    # And one requiring cosignatures refuses the re-signed heads outright.
    assert main([*verify, "--witness-key", str(witnessed.witness_pem), "--require-cosigned"]) == 1
    assert "not cosigned by witness" in capsys.readouterr().err


def test_a_log_rolled_back_with_its_head_file_is_refused_through_the_witness(
    server_factory: StartServer, clients_for: Any, witnessed: WitnessedDeployment, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = _serve_a_while(server_factory, clients_for, data, **witnessed.overrides())
    size = _entries(config)
    truncate(config.audit_log_path, keep=size - 3)
    config.audit_head_path.unlink()  # the intruder removes the server's own record too
    with pytest.raises(LogRolledBack, match=f"the witness at .* size {size}"):
        server_factory(data, **witnessed.overrides())
    # The rolled-back log's own heads are refused by the witness: it never goes back.
    with TransparencyLog.open(config.audit_log_path, load_signing_key(config.audit_key_path)) as log:
        older = log.sign_tree_head()
        with pytest.raises(WitnessRefused, match="rolled back"):
            witnessed.client().add(log.key_id, size, [], older)


def test_an_unreachable_witness_stops_the_start_only_when_required(
    server_factory: StartServer, clients_for: Any, witnessed: WitnessedDeployment, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = _serve_a_while(server_factory, clients_for, data, **witnessed.overrides())
    down = {**witnessed.overrides(), "audit.witness.url": "http://127.0.0.1:9", "audit.witness.timeout_s": 2}
    with pytest.raises(WitnessUnavailable):
        server_factory(data, **down)
    service, _, _ = server_factory(data, **{**down, "audit.witness.required": False})
    try:
        before = HeadRecord(config.audit_head_path).read()
        with pytest.raises(WitnessUnavailable):
            service.transparency_log.publish_tree_head()
        # Signed and recorded all the same; the witness gets a proof from its own size next time.
        after = HeadRecord(config.audit_head_path).read()
        assert before is not None and after is not None and after.timestamp >= before.timestamp
    finally:
        service.stop(grace_s=1)  # its final publication fails, is logged, and the stop goes on
    # With the head file alone, the truncation check still holds.
    truncate(config.audit_log_path, keep=2)
    with pytest.raises(LogRolledBack, match="the head file"):
        server_factory(data, **{**down, "audit.witness.required": False})


def test_the_log_key_head_file_and_witness_are_configured_outside_the_data_folder(tmp_path: Path) -> None:
    from safepassage.server.config import ConfigError, load_config

    file = tmp_path / "etc" / "safepassage.toml"
    file.parent.mkdir()
    file.write_text(
        '[storage]\ndata_dir = "/srv/data"\n'
        '[audit]\nkey_file = "log/transparency.pem"\nhead_file = "log/head.json"\n'
        '[audit.witness]\nurl = "http://witness.internal:8080"\npublic_key_file = "witness.pem"\n'
        "required = true\n"
    )
    config = load_config(file)
    assert config.audit_key_path == file.parent / "log" / "transparency.pem"
    assert config.audit_head_path == file.parent / "log" / "head.json"
    assert config.audit.witness.public_key_file == file.parent / "witness.pem"
    defaults = load_config(None, {"storage.data_dir": str(tmp_path / "data")})
    assert defaults.audit_key_path == tmp_path / "data-keys" / "audit-log-ed25519.pem"
    assert defaults.audit_head_path == tmp_path / "data-keys" / "audit-log-head.json"
    assert not defaults.audit.witness.url  # off by default: the head file alone is checked
    wrongs: tuple[dict[str, object], ...] = (
        {"audit.witness.url": "http://witness.internal"},  # no key to check its cosignatures
        {"audit.witness.url": "ftp://witness", "audit.witness.public_key_file": "w.pem"},
        {"audit.witness.required": True},
    )
    for wrong in wrongs:
        with pytest.raises(ConfigError, match="witness"):
            load_config(None, wrong)
