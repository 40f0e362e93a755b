"""What the holder knows: PIN and duress PIN (scrypt hashes), recovery codes and their lookup tags."""

from __future__ import annotations

import json
import os
import re

import pytest

from safepassage.core import errors as core
from safepassage.enrolment.errors import HolderNotVerified, InvalidRecord, RecordIntegrityError
from safepassage.enrolment.holder_secrets import (
    HolderSecrets,
    PinKind,
    new_recovery_code,
    normalise_recovery_code,
    recovery_tag,
)

PIN, DURESS = "482916", "731105"
CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_SHAPE = re.compile(rf"[{CROCKFORD}]{{4}}(-[{CROCKFORD}]{{4}}){{4}}")


@pytest.fixture(scope="module")
def secrets() -> HolderSecrets:
    return HolderSecrets.create(PIN, DURESS)


# -- PINs ---------------------------------------------------------------------------


def test_ordinary_and_duress_pins_are_told_apart(secrets: HolderSecrets) -> None:
    assert secrets.check(PIN) is PinKind.ORDINARY
    assert secrets.check(DURESS) is PinKind.DURESS


@pytest.mark.parametrize("wrong", ["482917", "4829", "000000", "731105" + "0", "482916482916"])
def test_a_wrong_pin_is_not_verified(secrets: HolderSecrets, wrong: str) -> None:
    with pytest.raises(HolderNotVerified, match="wrong PIN"):
        secrets.check(wrong)


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "123",
        "1234567890123",
        "48291a",
        " 482916",
        "482916\n",
        "\uff14\uff18\uff12\uff19\uff11\uff16",
        "-48291",
        None,
        482916,
    ],
)
def test_a_malformed_pin_is_not_verified(secrets: HolderSecrets, malformed: object) -> None:
    with pytest.raises(HolderNotVerified) as caught:
        secrets.check(malformed)  # type: ignore[arg-type]
    assert isinstance(caught.value, core.PermissionDenied)
    assert "4 to 12 digits" in str(caught.value)


def test_holder_not_verified_is_permission_denied(secrets: HolderSecrets) -> None:
    with pytest.raises(core.PermissionDenied):
        secrets.check("999999")


def test_equal_pins_are_refused_at_creation() -> None:
    with pytest.raises(InvalidRecord, match="differ"):
        HolderSecrets.create("123456", "123456")


@pytest.mark.parametrize("bad", ["123", "1234", "12345", "1234567890123", "12a456", "12 345", "", "١٢٣٤٥٦"])
@pytest.mark.parametrize("which", ["pin", "duress_pin"])
def test_new_pins_must_be_6_to_12_ascii_digits(bad: str, which: str) -> None:
    pins = {"pin": "555555", "duress_pin": "666666", which: bad}
    with pytest.raises(InvalidRecord, match=which) as caught:
        HolderSecrets.create(pins["pin"], pins["duress_pin"])
    assert isinstance(caught.value, core.InvalidInput)


def test_shortest_and_longest_pins_are_accepted() -> None:
    shortest = HolderSecrets.create("000000", "999999999999")
    assert shortest.check("000000") is PinKind.ORDINARY
    assert shortest.check("999999999999") is PinKind.DURESS


def test_four_digit_pins_made_before_the_six_digit_rule_still_check() -> None:
    """Hashes made when 4 digits were allowed keep working; only new PINs need 6."""
    import dataclasses
    import os

    from safepassage.enrolment.holder_secrets import _scrypt

    made = HolderSecrets.create("000000", "999999")
    salt = os.urandom(16)
    legacy = dataclasses.replace(made, pin_salt=salt, pin_hash=_scrypt("4829", salt))
    assert legacy.check("4829") is PinKind.ORDINARY
    with pytest.raises(HolderNotVerified):
        legacy.check("4828")


def test_salts_are_fresh_so_equal_pins_hash_differently() -> None:
    first, second = HolderSecrets.create(PIN, DURESS), HolderSecrets.create(PIN, DURESS)
    assert first.pin_salt != second.pin_salt and first.pin_hash != second.pin_hash
    assert first.duress_salt != second.duress_salt and first.duress_hash != second.duress_hash
    assert len(first.pin_salt) == 16 and len(first.pin_hash) == 32


def test_bytes_round_trip(secrets: HolderSecrets) -> None:
    data = secrets.to_bytes()
    restored = HolderSecrets.from_bytes(data)
    assert restored == secrets
    assert restored.check(PIN) is PinKind.ORDINARY and restored.check(DURESS) is PinKind.DURESS
    assert PIN.encode() not in data and DURESS.encode() not in data


def _damaged(secrets: HolderSecrets) -> list[bytes]:
    good = json.loads(secrets.to_bytes())
    variants: list[object] = [
        {**good, "format": 2},
        {k: v for k, v in good.items() if k != "pin"},
        {k: v for k, v in good.items() if k != "format"},
        {**good, "pin": [good["pin"][0]]},
        {**good, "pin": ["zz", good["pin"][1]]},
        {**good, "duress": None},
        {**good, "duress": [1, 2]},
        [],
    ]
    raw = secrets.to_bytes()
    return [json.dumps(v).encode() for v in variants] + [raw[:-1], b"", b"\xff\xfe", b"null"]


def test_damaged_bytes_are_an_integrity_error(secrets: HolderSecrets) -> None:
    for data in _damaged(secrets):
        with pytest.raises(RecordIntegrityError) as caught:
            HolderSecrets.from_bytes(data)
        assert isinstance(caught.value, core.DataIntegrityError), data


def test_repr_hides_the_hashes(secrets: HolderSecrets) -> None:
    for text in (repr(secrets), str(secrets), f"{secrets!r}"):
        assert "hidden" in text
        for secret in (secrets.pin_hash, secrets.pin_salt, secrets.duress_hash, secrets.duress_salt):
            assert secret.hex() not in text and repr(secret) not in text


# -- recovery codes -----------------------------------------------------------------


def test_recovery_code_format() -> None:
    code = new_recovery_code()
    assert CODE_SHAPE.fullmatch(code), code
    groups = code.split("-")
    assert len(groups) == 5 and all(len(g) == 4 for g in groups)
    assert normalise_recovery_code(code) == code.replace("-", "")


def test_a_thousand_codes_are_distinct_and_use_the_whole_alphabet() -> None:
    codes = [new_recovery_code() for _ in range(1000)]
    assert len(set(codes)) == 1000
    assert all(CODE_SHAPE.fullmatch(c) for c in codes)
    assert set("".join(codes).replace("-", "")) == set(CROCKFORD)  # 20 000 draws from 32 symbols


def test_normalisation_follows_crockfords_reading_rules() -> None:
    canonical = "7K2M" + "Q9XD" + "4TBE" + "H1WR" + "C8N0"
    for spelling in (
        "7K2M-Q9XD-4TBE-H1WR-C8N0",
        "7k2m-q9xd-4tbe-h1wr-c8n0",
        "7K2M Q9XD 4TBE H1WR C8N0",
        "7K2MQ9XD4TBEH1WRC8N0",
        "7K2M-Q9XD-4TBE-HIWR-C8NO",  # I -> 1, O -> 0
        "7K2M-Q9XD-4TBE-HLWR-C8No",  # L -> 1, o -> 0
        "7k2m - q9xd - 4tbe - hiwr - c8no",
        "  7K2M--Q9XD-4TBE-H1WR-C8N0 ",
        "-" * 44 + canonical,  # 64 characters: the longest accepted
    ):
        assert normalise_recovery_code(spelling) == canonical, spelling


@pytest.mark.parametrize(
    "malformed",
    [
        "",
        "7K2M-Q9XD-4TBE-H1WR",  # 16 characters
        "7K2M-Q9XD-4TBE-H1WR-C8N0-0",  # 21
        "7K2M-Q9XD-4TBE-H1WR-C8NU",  # U is not Crockford
        "7K2M-Q9XD-4TBE-H1WR-C8N!",
        "7K2M_Q9XD_4TBE_H1WR_C8N0",
        "7K2M\tQ9XD4TBEH1WRC8N0",
        "-" * 45 + "7K2MQ9XD4TBEH1WRC8N0",  # 65 characters: over the limit before normalising
        None,
        b"7K2MQ9XD4TBEH1WRC8N0",
    ],
)
def test_a_malformed_recovery_code_is_not_verified(malformed: object) -> None:
    with pytest.raises(HolderNotVerified, match="malformed"):
        normalise_recovery_code(malformed)  # type: ignore[arg-type]
    with pytest.raises(HolderNotVerified):
        recovery_tag(os.urandom(32), malformed)  # type: ignore[arg-type]


def test_recovery_tag_is_stable_under_normalisation_and_keyed() -> None:
    key, other_key = os.urandom(32), os.urandom(32)
    code = new_recovery_code()
    tag = recovery_tag(key, code)
    assert len(tag) == 32
    for spelling in (code.lower(), code.replace("-", ""), code.replace("-", " "), code.replace("0", "O")):
        assert recovery_tag(key, spelling) == tag
    assert recovery_tag(other_key, code) != tag
    assert recovery_tag(key, new_recovery_code()) != tag
    assert code.replace("-", "").encode() not in tag
