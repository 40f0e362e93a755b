"""The machine readable zone (ICAO 9303 part 3; parts 4 to 6 for each size): parse, check, compose.

Three sizes: TD1 (3 lines of 30, identity cards), TD2 (2 of 36), TD3 (2 of 44, passports). Each
check digit is the ICAO 7-3-1 digit (digits as themselves, A-Z as 10-35, ``<`` as 0, weights 7, 3, 1
repeating, the sum modulo 10) over the document number, the dates of birth and expiry, TD3's
optional data, and the composite. A TD1 or TD2 document number longer than nine characters goes
on in the optional data with ``<`` in its check digit's place (part 5, 4.2.2). Names: the primary
identifier, ``<<``, the secondary identifier, ``<`` between words.

A failed check names the field and the line, never the value: an MRZ is personal data.
"""

from __future__ import annotations

import datetime
import enum
import re
from dataclasses import dataclass

from safepassage.travel_document.errors import MalformedDocument, MrzCheckDigitMismatch

__all__ = ["Mrz", "MrzFormat", "check_digit", "compose", "parse"]

_CHARACTERS = re.compile(r"[A-Z0-9<]*")
_WEIGHTS = (7, 3, 1)


class MrzFormat(enum.StrEnum):
    TD1 = "TD1"
    TD2 = "TD2"
    TD3 = "TD3"

    @property
    def shape(self) -> tuple[int, int]:
        """(lines, characters per line)."""
        return {"TD1": (3, 30), "TD2": (2, 36), "TD3": (2, 44)}[self.value]


def check_digit(field: str) -> str:
    """The ICAO 9303 check digit of ``field`` (characters A-Z, 0-9 and ``<``)."""
    total = 0
    for position, character in enumerate(field):
        if character.isdigit():
            value = int(character)
        elif "A" <= character <= "Z":
            value = ord(character) - ord("A") + 10
        elif character == "<":
            value = 0
        else:
            raise MalformedDocument(f"MRZ: character {position + 1} of a checked field is not A-Z, 0-9 or <")
        total += value * _WEIGHTS[position % 3]
    return str(total % 10)


@dataclass(frozen=True)
class Mrz:
    """A parsed, checked MRZ. Dates are YYMMDD as printed (``<`` for an unknown part of a birth date)."""

    format: MrzFormat
    document_code: str
    issuing_state: str
    document_number: str
    nationality: str
    birth_date: str
    sex: str
    expiry_date: str
    optional_data: str
    optional_data_2: str  # TD1's second optional field; "" elsewhere
    primary_identifier: str
    secondary_identifier: str
    lines: tuple[str, ...]

    def expiry(self, today: datetime.date) -> datetime.date:
        """The expiry date, its century the one that puts it within 50 years of ``today``."""
        year, month, day = int(self.expiry_date[:2]), int(self.expiry_date[2:4]), int(self.expiry_date[4:])
        century = 2000 if 2000 + year <= today.year + 50 else 1900
        return datetime.date(century + year, month, day)

    def expired(self, today: datetime.date) -> bool:
        return self.expiry(today) < today


def _field(line: str, start: int, end: int) -> str:
    return line[start:end]


def _checked(value: str, digit: str, name: str, line: int, optional: bool = False) -> None:
    if optional and digit == "<" and set(value) <= {"<"}:
        return  # an empty optional field may leave its check digit as filler (part 4, 4.2.2.2)
    if check_digit(value) != digit:
        raise MrzCheckDigitMismatch(f"MRZ line {line}: the {name} check digit does not match the field")


def _date(value: str, name: str, line: int, unknown_allowed: bool) -> str:
    parts = (value[:2], value[2:4], value[4:])
    if unknown_allowed and value.count("<"):
        if any(part not in ("<<",) and not part.isdigit() for part in parts):
            raise MalformedDocument(f"MRZ line {line}: the {name} is not YYMMDD")
        return value
    if not value.isdigit():
        raise MalformedDocument(f"MRZ line {line}: the {name} is not YYMMDD")
    month, day = int(parts[1]), int(parts[2])
    # 2000 is a leap year, so a 29 February of any century passes here.
    try:
        datetime.date(2000, month, day)
    except ValueError:
        raise MalformedDocument(f"MRZ line {line}: the {name} is not a calendar date") from None
    return value


def _names(field: str) -> tuple[str, str]:
    primary, _, secondary = field.rstrip("<").partition("<<")
    return primary.replace("<", " ").strip(), secondary.replace("<", " ").strip()


def _document_number(number: str, digit: str, optional: str, line: int) -> tuple[str, str]:
    """(document number, what remains of the optional data), long numbers followed into the optional data."""
    if digit != "<":
        _checked(number, digit, "document number", line)
        return number.rstrip("<"), optional
    # Nine characters were not enough: the rest, then the check digit, lead the optional data.
    rest = optional.split("<", 1)[0]
    if len(rest) < 2:
        raise MalformedDocument(f"MRZ line {line}: a long document number without its check digit")
    full = number + rest[:-1]
    _checked(full, rest[-1], "document number", line)
    return full, optional[len(rest) :]


def _sex(value: str, line: int) -> str:
    if value not in ("M", "F", "X", "<"):
        raise MalformedDocument(f"MRZ line {line}: the sex field is not M, F, X or <")
    return value


def parse(lines: list[str] | tuple[str, ...] | str) -> Mrz:
    """A TD1, TD2 or TD3 MRZ (lines, or one string of them joined or separated by newlines), checked."""
    if isinstance(lines, str):
        lines = lines.split()
    lines = tuple(lines)
    shapes = {fmt.shape: fmt for fmt in MrzFormat}
    lengths = {len(line) for line in lines}
    fmt = shapes.get((len(lines), lengths.pop())) if len(lengths) == 1 and lines else None
    if fmt is None:
        raise MalformedDocument(
            "MRZ: not 3 lines of 30 (TD1), 2 of 36 (TD2) or 2 of 44 (TD3) characters"
            f" ({len(lines)} lines of {sorted({len(line) for line in lines})})"
        )
    for number, line in enumerate(lines, 1):
        if not _CHARACTERS.fullmatch(line):
            raise MalformedDocument(f"MRZ line {number}: characters other than A-Z, 0-9 and <")
    return _parse_td1(lines) if fmt is MrzFormat.TD1 else _parse_td2_td3(lines, fmt)


def _parse_td1(lines: tuple[str, ...]) -> Mrz:
    one, two, three = lines
    number, optional = _document_number(one[5:14], one[14], one[15:30], 1)
    birth = _date(two[0:6], "date of birth", 2, unknown_allowed=True)
    _checked(two[0:6], two[6], "date of birth", 2)
    expiry = _date(two[8:14], "date of expiry", 2, unknown_allowed=False)
    _checked(two[8:14], two[14], "date of expiry", 2)
    _checked(one[5:30] + two[0:7] + two[8:15] + two[18:29], two[29], "composite", 2)
    primary, secondary = _names(three)
    return Mrz(
        MrzFormat.TD1,
        one[0:2].rstrip("<"),
        one[2:5],
        number,
        two[15:18],
        birth,
        _sex(two[7], 2),
        expiry,
        optional.strip("<"),
        two[18:29].rstrip("<"),
        primary,
        secondary,
        lines,
    )


def _parse_td2_td3(lines: tuple[str, ...], fmt: MrzFormat) -> Mrz:
    one, two = lines
    end = 35 if fmt is MrzFormat.TD2 else 42  # where the optional data ends
    optional = two[28:end]
    if fmt is MrzFormat.TD3:
        number = _field(two, 0, 9)
        _checked(number, two[9], "document number", 2)
        number = number.rstrip("<")
        _checked(optional, two[42], "optional data", 2, optional=True)
    else:
        number, optional = _document_number(two[0:9], two[9], optional, 2)
    birth = _date(two[13:19], "date of birth", 2, unknown_allowed=True)
    _checked(two[13:19], two[19], "date of birth", 2)
    expiry = _date(two[21:27], "date of expiry", 2, unknown_allowed=False)
    _checked(two[21:27], two[27], "date of expiry", 2)
    composite_end = end + 1 if fmt is MrzFormat.TD3 else end
    _checked(two[0:10] + two[13:20] + two[21:composite_end], two[composite_end], "composite", 2)
    primary, secondary = _names(one[5:])
    return Mrz(
        fmt,
        one[0:2].rstrip("<"),
        one[2:5],
        number,
        two[10:13],
        birth,
        _sex(two[20], 2),
        expiry,
        optional.strip("<"),
        "",
        primary,
        secondary,
        lines,
    )


def _pad(value: str, size: int, what: str) -> str:
    if len(value) > size:
        raise ValueError(f"the {what} is longer than {size} characters")
    if not _CHARACTERS.fullmatch(value):
        raise ValueError(f"the {what} holds characters other than A-Z, 0-9 and <")
    return value + "<" * (size - len(value))


def compose(
    fmt: MrzFormat,
    *,
    document_code: str,
    issuing_state: str,
    document_number: str,
    nationality: str,
    birth_date: str,
    sex: str,
    expiry_date: str,
    primary_identifier: str,
    secondary_identifier: str,
    optional_data: str = "",
) -> tuple[str, ...]:
    """The MRZ lines for these fields, with every check digit computed (the writer tests use)."""
    count, width = fmt.shape
    name = primary_identifier.replace(" ", "<") + "<<" + secondary_identifier.replace(" ", "<")
    code, state = _pad(document_code, 2, "document code"), _pad(issuing_state, 3, "issuing state")
    nationality = _pad(nationality, 3, "nationality")
    number = _pad(document_number, 9, "document number")
    birth = birth_date + check_digit(birth_date)
    expiry = expiry_date + check_digit(expiry_date)
    numbered = number + check_digit(number)
    if fmt is MrzFormat.TD1:
        one = code + state + numbered + _pad(optional_data, 15, "optional data")
        two = birth + sex + expiry + nationality + "<" * 11
        two += check_digit(one[5:30] + two[0:7] + two[8:15] + two[18:29])
        return one, two, _pad(name, width, "name")
    one = code + state + _pad(name, width - 5, "name")
    if fmt is MrzFormat.TD3:
        optional = _pad(optional_data, 14, "optional data")
        two = numbered + nationality + birth + sex + expiry + optional + check_digit(optional)
    else:
        two = numbered + nationality + birth + sex + expiry + _pad(optional_data, 7, "optional data")
    two += check_digit(two[0:10] + two[13:20] + two[21:])
    assert len(one) == len(two) == width and count == 2
    return one, two
