"""No biometric or personal data reaches the log: refused at the door, absent from file and export."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safepassage.audit import InvalidEvent, LogEvent, TransparencyLog, audit, pseudonym, sha256_hex
from tests.audit_log.conftest import BASE_MS

PEPPER = b"deployment-secret-pepper-0123456789"

# What a careless caller might try to log about one enrolment.
SUBJECT = {
    "name": "Amara Okonkwo-Diallo",
    "first_name": "Amara",
    "reference_id": "ngo7-case-000123",
    "passport": "P4366918",
    "birth": "1991-04-17",
    "email": "amara.okonkwo@example.org",
}
VECTOR = np.random.default_rng(7).standard_normal(128).astype(np.float32)


def _forbidden() -> list[bytes]:
    strings = [value.encode() for value in SUBJECT.values()]
    strings += [b"Okonkwo", b"Diallo", b"P4366918"]
    # The vector as text (any way it might be printed) and as raw float32 bytes.
    strings += [f"{x:.4f}".encode() for x in VECTOR[:16]]
    strings += [repr(float(x)).encode() for x in VECTOR[:16]]
    strings += [VECTOR[:4].tobytes(), struct.pack("<4f", *VECTOR[4:8])]
    return strings


def _attempts() -> list[dict[str, str]]:
    """Details a careless caller might pass; every one must be refused."""
    vector_text = ",".join(f"{x:.4f}" for x in VECTOR)
    return [
        {"name": SUBJECT["name"]},
        {"subject": SUBJECT["first_name"]},
        {"reference_id": SUBJECT["reference_id"]},
        {"passport": SUBJECT["passport"]},
        {"birth": SUBJECT["birth"]},
        {"email": SUBJECT["email"]},
        {"embedding": vector_text},
        {"v0": f"{VECTOR[0]:.4f}"},
        {"probe": VECTOR.tobytes().hex()[:64]},
        {"note": "matched Amara Okonkwo-Diallo"},
    ]


@pytest.mark.parametrize("details", _attempts(), ids=lambda d: next(iter(d)))
def test_personal_details_are_refused(details: dict[str, str]) -> None:
    with pytest.raises(InvalidEvent):
        LogEvent(
            BASE_MS, "ngo_caseworker:cw-0007", "MatchingService/InsertTemplate", "protected-7", "OK", details
        )


def test_exported_log_holds_no_personal_data(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    log_path = tmp_path / "log.db"
    reference = pseudonym(PEPPER, SUBJECT["reference_id"])
    allowed = [
        LogEvent(
            BASE_MS,
            "ngo_caseworker:cw-0007",
            "MatchingService/InsertTemplate",
            "protected-7",
            "OK",
            {"reference_sha256": reference, "template_sha256": sha256_hex(VECTOR.tobytes()), "faces": "1"},
        ),
        LogEvent(
            BASE_MS + 1,
            "officer:officer-0042",
            "MatchingService/Identify",
            "watchlist-eu",
            "OK",
            {"probe_sha256": sha256_hex(b"probe image bytes"), "candidates": "3", "decision": "no_match"},
        ),
        LogEvent(BASE_MS + 2, "admin:admin-01", "certificate.revoke", "", "OK", {"serial": "4660"}),
        LogEvent(
            BASE_MS + 3,
            "ngo_caseworker:cw-0007",
            "MatchingService/DeleteTemplate",
            "protected-7",
            "OK",
            {"reference_sha256": reference, "reason": "erasure_request"},
        ),
    ]
    with TransparencyLog.open(log_path, key) as log:
        for details in _attempts():
            with pytest.raises(InvalidEvent):
                log.append(
                    LogEvent(BASE_MS, "officer:officer-0042", "MatchingService/Enrol", "", "OK", details)
                )
        log.append_many(allowed)
        log.export(tmp_path / "export")
    audit(tmp_path / "export", public_key=key.public_key())

    files = [*(tmp_path / "export").iterdir(), *tmp_path.glob("log.db*")]
    assert {f.name for f in files} >= {"entries.jsonl", "tree_heads.jsonl", "log_public_key.pem", "log.db"}
    forbidden = _forbidden()
    for path in files:
        content = path.read_bytes()
        for needle in forbidden:
            assert needle not in content, f"{path.name} contains forbidden data"
        # Case-insensitive for the name parts, which someone might have lowercased.
        for part in ("amara", "okonkwo", "diallo"):
            assert part.encode() not in content.lower(), f"{path.name} contains a name"
    # The erasure is provable without the reference id: its keyed digest is in the log.
    assert reference.encode() in (tmp_path / "export" / "entries.jsonl").read_bytes()
