"""The MRZ against ICAO 9303 part 3's specimens (TD1, TD2, TD3): fields, check digits, and each
tampered digit refused naming its field (never quoting it); DG1 read and written."""

from __future__ import annotations

import datetime

import pytest

from safepassage.travel_document import MalformedDocument, MrzCheckDigitMismatch, read_dg1, write_dg1
from safepassage.travel_document.mrz import MrzFormat, check_digit, compose, parse

TD3 = ("P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<", "L898902C36UTO7408122F1204159ZE184226B<<<<<10")
TD2 = ("I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<", "D231458907UTO7408122F1204159<<<<<<<6")
TD1 = ("I<UTOD231458907<<<<<<<<<<<<<<<", "7408122F1204159UTO<<<<<<<<<<<6", "ERIKSSON<<ANNA<MARIA<<<<<<<<<<")


def test_check_digits_of_the_specimen_fields() -> None:
    # ICAO 9303 part 3, 4.9: the worked examples.
    assert check_digit("L898902C3") == "6"
    assert check_digit("740812") == "2"
    assert check_digit("120415") == "9"
    assert check_digit("ZE184226B<<<<<") == "1"
    assert check_digit("<<<<") == "0"


def test_td3_specimen() -> None:
    mrz = parse(TD3)
    assert mrz.format is MrzFormat.TD3
    assert (mrz.document_code, mrz.issuing_state, mrz.nationality) == ("P", "UTO", "UTO")
    assert (mrz.document_number, mrz.birth_date, mrz.sex, mrz.expiry_date) == (
        "L898902C3",
        "740812",
        "F",
        "120415",
    )
    assert mrz.optional_data == "ZE184226B"
    assert (mrz.primary_identifier, mrz.secondary_identifier) == ("ERIKSSON", "ANNA MARIA")
    assert mrz.expiry(datetime.date(2026, 1, 1)) == datetime.date(2012, 4, 15)
    assert mrz.expired(datetime.date(2026, 1, 1))


def test_td2_specimen() -> None:
    mrz = parse(TD2)
    assert mrz.format is MrzFormat.TD2
    assert (mrz.document_code, mrz.document_number, mrz.birth_date, mrz.expiry_date) == (
        "I",
        "D23145890",
        "740812",
        "120415",
    )
    assert (mrz.primary_identifier, mrz.secondary_identifier) == ("ERIKSSON", "ANNA MARIA")


def test_td1_specimen() -> None:
    mrz = parse(TD1)
    assert mrz.format is MrzFormat.TD1
    assert (mrz.document_code, mrz.issuing_state, mrz.nationality) == ("I", "UTO", "UTO")
    assert (mrz.document_number, mrz.birth_date, mrz.sex, mrz.expiry_date) == (
        "D23145890",
        "740812",
        "F",
        "120415",
    )
    assert (mrz.primary_identifier, mrz.secondary_identifier) == ("ERIKSSON", "ANNA MARIA")
    # One string of lines, as a reader application may pass it.
    assert parse("\n".join(TD1)) == mrz


def _replace(lines: tuple[str, ...], line: int, position: int, character: str) -> tuple[str, ...]:
    changed = list(lines)
    changed[line] = changed[line][:position] + character + changed[line][position + 1 :]
    return tuple(changed)


@pytest.mark.parametrize(
    ("lines", "line", "position", "field"),
    [
        (TD3, 1, 9, "document number"),
        (TD3, 1, 19, "date of birth"),
        (TD3, 1, 27, "date of expiry"),
        (TD3, 1, 42, "optional data"),
        (TD3, 1, 43, "composite"),
        (TD2, 1, 9, "document number"),
        (TD2, 1, 19, "date of birth"),
        (TD2, 1, 27, "date of expiry"),
        (TD2, 1, 35, "composite"),
        (TD1, 0, 14, "document number"),
        (TD1, 1, 6, "date of birth"),
        (TD1, 1, 14, "date of expiry"),
        (TD1, 1, 29, "composite"),
    ],
)
def test_a_tampered_check_digit_is_refused_naming_its_field(
    lines: tuple[str, ...], line: int, position: int, field: str
) -> None:
    wrong = str((int(lines[line][position]) + 1) % 10)
    with pytest.raises(MrzCheckDigitMismatch, match=field) as refused:
        parse(_replace(lines, line, position, wrong))
    assert "L898902C3" not in str(refused.value) and "ERIKSSON" not in str(refused.value)


def test_a_changed_field_fails_its_check_digit() -> None:
    # A forger changing the expiry year without recomputing the digits.
    with pytest.raises(MrzCheckDigitMismatch, match="date of expiry"):
        parse(_replace(TD3, 1, 22, "9"))
    with pytest.raises(MrzCheckDigitMismatch, match="document number"):
        parse(_replace(TD3, 1, 0, "K"))


@pytest.mark.parametrize(
    "lines",
    [
        (TD3[0], TD3[1][:-1]),  # a short line
        (TD3[0],),  # one line
        (TD3[0].lower(), TD3[1]),  # lower case
        (TD3[0], TD3[1].replace("F", " ")),  # a space
        (TD1[0], TD1[1], TD1[2] + "<"),
        (),
    ],
)
def test_malformed_lines_are_refused(lines: tuple[str, ...]) -> None:
    with pytest.raises(MalformedDocument):
        parse(lines)


def test_impossible_dates_and_sex_are_refused() -> None:
    expiry = compose(
        MrzFormat.TD3,
        document_code="P",
        issuing_state="UTO",
        document_number="L898902C3",
        nationality="UTO",
        birth_date="740812",
        sex="F",
        expiry_date="121345",  # month 13, and digits that check
        primary_identifier="ERIKSSON",
        secondary_identifier="ANNA",
    )
    with pytest.raises(MalformedDocument, match="date of expiry"):
        parse(expiry)
    with pytest.raises(MalformedDocument, match="sex"):
        parse(_replace(TD3, 1, 20, "Q"))


def test_compose_writes_what_parse_reads() -> None:
    for lines in (TD1, TD2, TD3):
        mrz = parse(lines)
        assert (
            compose(
                mrz.format,
                document_code=mrz.document_code,
                issuing_state=mrz.issuing_state,
                document_number=mrz.document_number,
                nationality=mrz.nationality,
                birth_date=mrz.birth_date,
                sex=mrz.sex,
                expiry_date=mrz.expiry_date,
                primary_identifier=mrz.primary_identifier,
                secondary_identifier=mrz.secondary_identifier,
                optional_data=mrz.optional_data,
            )
            == lines
        )


def test_a_long_td1_document_number_continues_in_the_optional_data() -> None:
    # Part 5, 4.2.2: twelve characters; "<" in the check digit's place, the rest and the digit after.
    number = "D23145890123"
    rest = number[9:] + check_digit(number)
    one = "I<UTO" + number[:9] + "<" + rest + "<" * (15 - len(rest))
    two = "7408122F1204159UTO<<<<<<<<<<<"
    two += check_digit(one[5:30] + two[0:7] + two[8:15] + two[18:29])
    mrz = parse((one, two, TD1[2]))
    assert mrz.document_number == number and mrz.optional_data == ""
    with pytest.raises(MrzCheckDigitMismatch, match="document number"):
        parse((one.replace(rest, rest[:-1] + str((int(rest[-1]) + 1) % 10)), two, TD1[2]))


@pytest.mark.parametrize("lines", [TD1, TD2, TD3])
def test_dg1_round_trip(lines: tuple[str, ...]) -> None:
    data = write_dg1(lines)
    assert data[0] == 0x61 and data[2:4] == b"\x5f\x1f"
    assert read_dg1(data).lines == lines


def test_dg1_with_a_wrong_mrz_length_or_tag_is_refused() -> None:
    good = write_dg1(TD3)
    with pytest.raises(MalformedDocument, match="87 characters"):
        read_dg1(bytes([0x61, 0x5A, 0x5F, 0x1F, 0x57]) + good[5:-1])
    with pytest.raises(MalformedDocument, match="tag 75"):
        read_dg1(b"\x75" + good[1:])
    with pytest.raises(MalformedDocument):
        read_dg1(good[:-3])
