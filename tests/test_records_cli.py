"""`safepassage records` and `safepassage credential` against a server run by `safepassage serve`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from safepassage.server.config import load_config
from safepassage.server.identity import Role
from tests.conftest import REPO
from tests.process import ServerProcess
from tests.server.protected_helpers import HOLDER, OTHER, person
from tests.test_cli import assert_one_line_failure, cli, closed_port, local, offline_pki

pytestmark = pytest.mark.server


def test_records_round_trip(tmp_path: Path, faces_dir: Path) -> None:
    holder, other = person(faces_dir, HOLDER), person(faces_dir, OTHER)
    consent = tmp_path / "consent-ne.txt"
    consent.write_text("म सहमत छु: SafePassage ले मेरो पहिचान अभिलेख राख्न सक्छ।\n", encoding="utf-8")
    out_dir, keys = tmp_path / "holder", tmp_path / "keys"
    server = ServerProcess(tmp_path / "data")
    try:
        for client, role in (
            ("ngo-1", Role.NGO_CASEWORKER),
            ("officer-1", Role.OFFICER),
            ("kiosk-1", Role.KIOSK),
        ):
            server.issue(client, role)
        assert (
            cli(server, "gallery", "create", "ngo-records", "--purpose", "protected_identity").returncode == 0
        )
        enrolled = cli(
            server,
            "records", "enrol", "ngo-records",
            "--record", str(REPO / "examples" / "protected-record.json"),
            "--face", str(holder.photos[0]),
            "--consent-text", str(consent), "--language", "ne-NP",
            "--grant", "store", "--grant", "verify_at_border", "--refuse", "duplicate_check",
            "--pin", "482916", "--duress-pin", "731105",
            "--out", str(out_dir),
            client="ngo-1",
        )  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        record_id = re.search(r"record (pr-[0-9a-f]+)", enrolled.stdout)
        code = re.search(r"recovery code.*: ([0-9A-Z-]{24})", enrolled.stdout)
        assert record_id and code, enrolled.stdout
        assert (out_dir / "credential.png").read_bytes().startswith(b"\x89PNG")

        assert cli(server, "records", "public-keys", "--out", str(keys), client="officer-1").returncode == 0
        station_key = next(keys.glob("*-station.pem"))
        issuer_key = next(keys.glob("*-issuer.pem"))
        checked = local(
            "records",
            "verify-receipt",
            str(out_dir / "consent-receipt.json"),
            "--station-key",
            str(station_key),
        )
        assert checked.returncode == 0 and "VALID consent receipt" in checked.stdout, checked.stderr

        # Offline, on a device holding a reader key the credential was sealed to (here the server's own).
        reader = load_config(None, {"storage.data_dir": str(server.data_dir)}).reader_key_path
        offline = [
            "credential", "verify", "--qr", str(out_dir / "credential.png"),
            "--issuer-key", str(issuer_key), "--reader-key", str(reader),
        ]  # fmt: skip
        same = local(*offline, "--face", str(holder.photos[2]))
        assert same.returncode == 0 and "VERIFIED" in same.stdout, same.stdout + same.stderr
        stranger = local(*offline, "--face", str(other.photos[1]))
        assert stranger.returncode == 1 and "NOT VERIFIED" in stranger.stderr

        shown = cli(
            server, "records", "verify-holder", "--credential", str(out_dir / "credential.png"),
            "--face", str(holder.photos[2]), client="officer-1",
        )  # fmt: skip
        assert shown.returncode == 0 and "Tamang" in shown.stdout and "PA1234567" not in shown.stdout
        full = cli(
            server, "records", "verify-holder", "--recovery-code", code.group(1),
            "--face", str(holder.photos[2]), "--pin", "482916", client="officer-1",
        )  # fmt: skip
        assert full.returncode == 0 and "PA1234567" in full.stdout

        withdrawn = cli(
            server, "records", "withdraw", "--record-id", record_id.group(1), "verify_at_border",
            "--consent-text", str(consent), "--language", "ne-NP", client="ngo-1",
        )  # fmt: skip
        assert withdrawn.returncode == 0, withdrawn.stderr
        refused = cli(
            server, "records", "verify-holder", "--recovery-code", code.group(1),
            "--face", str(holder.photos[2]), client="officer-1",
        )  # fmt: skip
        assert (
            refused.returncode == 1
            and "PERMISSION_DENIED" in refused.stderr
            and "verify_at_border" in refused.stderr
        )

        backup = tmp_path / "vault-backup.sqlite3"
        assert (
            local("records", "backup", "--data-dir", str(server.data_dir), "--out", str(backup)).returncode
            == 0
        )
        assert backup.stat().st_size > 0
        erased = cli(
            server, "records", "erase", "--recovery-code", code.group(1),
            "--out", str(tmp_path / "erased.json"), client="kiosk-1",
        )  # fmt: skip
        assert erased.returncode == 0, erased.stderr
        receipt = local(
            "records", "verify-receipt", str(tmp_path / "erased.json"), "--station-key", str(station_key)
        )
        assert receipt.returncode == 0 and "VALID erasure receipt" in receipt.stdout
        gone = cli(server, "records", "consent", "--record-id", record_id.group(1), client="ngo-1")
        assert gone.returncode == 1 and "FAILED_PRECONDITION" in gone.stderr and "erased" in gone.stderr
    finally:
        assert server.stop() == 0


ENROL = "enrol g --record {record} --face {face}"
CONSENTED = f"{ENROL} --consent-text {{consent}}"
# case, the records command, its exit status, what its one line must name
FAILURES = [
    ("missing record", "enrol g --record {t}/r.json --face {face}", 2, ["--record {t}/r.json"]),
    ("not a record", "enrol g --record {consent} --face {face}", 2, ["--record {consent} is not"]),
    ("missing face", "enrol g --record {record} --face {t}/f.jpg", 2, ["--face {t}/f.jpg"]),
    ("no consent text", ENROL, 2, ["--consent-text"]),
    ("empty consent", "withdraw --record-id pr-1 store --consent-text {t}/e.txt", 2, ["{t}/e.txt is empty"]),
    ("withdraw, no text", "withdraw --record-id pr-1 duplicate_check", 2, ["--consent-text"]),
    ("no PIN, no TTY", CONSENTED, 2, ["--pin", "not a terminal"]),
    ("no duress PIN", f"{CONSENTED} --pin 482916", 2, ["--duress-pin"]),
    ("no holder PIN", "grant --credential {t}/e.txt --face {face} x --consent-text {consent}", 2, ["--pin"]),
    ("no credential", "verify-holder --credential {t}/c.png --face {face}", 2, ["--credential {t}/c.png"]),
    ("bad flag value", f"{ENROL} --valid-days two", 2, ["--valid-days", "'two'"]),
    ("no receipt", "verify-receipt {t}/receipt.json --station-key {t}/k.pem", 2, ["{t}/receipt.json"]),
    ("unreachable", f"{CONSENTED} --pin 482916 --duress-pin 731105", 1, ["UNAVAILABLE", "localhost:{port}"]),
]  # fmt: skip


@pytest.mark.parametrize(("case", "command", "status", "named"), FAILURES)
def test_records_cli_failures_are_one_line_naming_the_file_or_flag(
    tmp_path: Path, faces_dir: Path, case: str, command: str, status: int, named: list[str]
) -> None:
    """Exit 2 for what cannot be used as given, 1 for the server; never a traceback, also with no TTY."""
    (tmp_path / "e.txt").write_text("\n", encoding="utf-8")
    pki, port = offline_pki(tmp_path / "pki"), closed_port()
    values = {
        "t": str(tmp_path),
        "port": str(port),
        "face": str(person(faces_dir, HOLDER).photos[0]),
        "record": str(REPO / "examples" / "protected-record.json"),
        "consent": str(REPO / "examples" / "consent-ne.txt"),
    }
    words = ["records", *command.format(**values).split()]
    if words[1] == "enrol":
        words += ["--out-dir", str(tmp_path / "holder")]
    if words[1] != "verify-receipt":
        words += ["--server", f"localhost:{port}", "--pki-dir", str(pki), "--client", "ngo-1"]
    out = local(*words)  # standard input is not a terminal: no PIN can be asked for
    assert_one_line_failure(out, status, *(name.format(**values) for name in named))
