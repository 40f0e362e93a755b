"""LogEvent: canonical leaf bytes, and refusal of anything that could carry personal data."""

from __future__ import annotations

import json
from typing import Any

import pytest

from safepassage.audit import InvalidEvent, LogEvent, pseudonym, sha256_hex
from tests.audit_log.conftest import BASE_MS

DIGEST = sha256_hex(b"reference 17")


def event(**changes: Any) -> LogEvent:
    fields: dict[str, Any] = {
        "timestamp": BASE_MS,
        "actor": "officer:officer-0042",
        "operation": "MatchingService/Identify",
        "gallery_id": "watchlist-eu",
        "outcome": "OK",
        "details": {"faces": "2", "reference_sha256": DIGEST},
    }
    fields.update(changes)
    return LogEvent(**fields)


def test_canonical_leaf_is_sorted_compact_json() -> None:
    leaf = event(details={"reference_sha256": DIGEST, "faces": "2"}).to_leaf()
    assert leaf == (
        b'{"actor":"officer:officer-0042","details":{"faces":"2","reference_sha256":"'
        + DIGEST.encode()
        + b'"},"gallery_id":"watchlist-eu","operation":"MatchingService/Identify","outcome":"OK",'
        b'"timestamp":1767225600000,"v":1}'
    )
    assert LogEvent.from_leaf(leaf) == event()
    assert list(event(details={"z": "1", "a": "2"}).details) == ["a", "z"]


def test_events_are_immutable_and_hashable() -> None:
    e = event()
    with pytest.raises(TypeError):
        e.details["faces"] = "3"  # type: ignore[index]
    assert hash(e) == hash(event())
    assert len({e, event()}) == 1


def test_now_and_accepted_shapes() -> None:
    e = LogEvent.now("admin:admin-01", "certificate.revoke", details={"serial": "4660"})
    assert e.timestamp > BASE_MS and e.outcome == "OK" and e.gallery_id == ""
    for accepted in (
        event(actor="system"),
        event(actor="cctv_edge:cam-gate-3"),
        event(operation="/safepassage.v1.MatchingService/Identify"),
        event(outcome="PERMISSION_DENIED"),
        event(details={"purpose": "watchlist", "state": "NOT_FOUND", "version": "v1.2", "empty": ""}),
        event(details={"count": "0", "faces": "999999999"}),
        event(details={"certificate_sha256": DIGEST, "reason": "key_compromise"}),
        # What the PKI's change hook (safepassage.server.certificate_index.ChangeHook) reports.
        event(
            operation="certificate.revoke",
            details={
                "kind": "client",
                "client_id": "officer-0042",
                "role": "officer",
                "serial": "5F3A9C0B7D12E4A6F8B1C3D5E7F90A1B2C3D4E5F",
                "not_after": "2027-05-01T00:00:00+00:00",
            },
        ),
        event(operation="pki.init", details={"ca_fingerprint": DIGEST, "not_after": "2036-01-01T00:00:00Z"}),
        event(details={"serial": "1E5"}),  # hex, though float() reads it
    ):
        assert LogEvent.from_leaf(accepted.to_leaf()) == accepted


@pytest.mark.parametrize(
    "changes",
    [
        {"timestamp": 1.5},
        {"timestamp": -1},
        {"timestamp": True},
        {"actor": "Maria Lopez"},
        {"actor": "officer:Maria Lopez"},
        {"actor": "officer:maria.lopez@example.org"},
        {"actor": "officer:Maria"},
        {"actor": ""},
        {"operation": "identify everyone named Maria"},
        {"operation": "x" * 129},
        {"gallery_id": "Maria's family"},
        {"outcome": "ok then"},
        {"outcome": "Failed: subject Maria Lopez not found"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_malformed_fields_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent):
        event(**changes)


@pytest.mark.parametrize(
    "details",
    [
        {"subject": "Maria Lopez"},  # a name with a space
        {"subject": "Maria"},  # a capitalised word
        {"subject": "MariaLopez"},
        {"full_name": "x"},  # a key that names personal data
        {"reference_id": "case-000123"},  # references only as digests
        {"date_of_birth": "19900101"},
        {"passport_number": "X1234567"},
        {"score": "0.8731"},  # a float
        {"score": "-1e-3"},
        {"score": "nan"},
        {"score": "-inf"},
        {"when": "2027-05-01 00:00"},
        {"vector": "0.12,0.55,-0.3"},  # a float vector
        {"d0": "0.12"},
        {"embedding": "[0.1, 0.2]"},
        {"blob": "AAECAwQFBgcICQ=="},  # base64
        {"faces": "0042"},  # not a canonical integer
        {"faces": "1234567890"},  # more than 9 digits
        {"reference_sha256": "not a digest"},
        {"reference_sha256": DIGEST.upper()},
        {"token": DIGEST},  # a digest under a key that does not say so
        {"token": "a" * 65},
        {"Faces": "1"},  # keys are lowercase
        {"faces": 2},  # values are strings
        {f"k{i}": "1" for i in range(17)},  # too many
    ],
    ids=lambda d: next(iter(d)),
)
def test_details_that_could_carry_personal_data_are_refused(details: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent) as refused:
        event(details=details)
    # The message never echoes the refused value.
    for value in details.values():
        if isinstance(value, str) and len(value) > 3:
            assert value not in str(refused.value)


def test_from_leaf_accepts_only_canonical_bytes() -> None:
    good = event().to_leaf()
    obj = json.loads(good)
    for bad in (
        json.dumps(obj).encode(),  # spaces
        json.dumps(obj, sort_keys=True, indent=1).encode(),
        good.replace(b'"v":1', b'"v":1.0'),
        good.replace(b'"v":1', b'"v":2'),
        good[:-1] + b',"v":1}',  # duplicate key
        good.replace(b'"outcome":"OK",', b""),
        good.replace(b"}", b',"note":"x"}', 1),
        b"[]",
        b"\xff",
        good.replace(b'"timestamp":1767225600000', b'"timestamp":NaN'),
        good.replace(b"officer-0042", b"officer-\\u0030042"),  # escaped, same value
    ):
        with pytest.raises(InvalidEvent):
            LogEvent.from_leaf(bad)


def test_pseudonym_is_keyed() -> None:
    a = pseudonym(b"k" * 32, "case-000123")
    assert len(a) == 64 and a != sha256_hex(b"case-000123")
    assert a != pseudonym(b"j" * 32, "case-000123")
    event(details={"reference_sha256": a})
    with pytest.raises(ValueError):
        pseudonym(b"short", "case-000123")
