"""BER-TLV, as the LDS data groups (ICAO 9303 part 10) and ISO/IEC 39794-5 records use it.

A minimal codec of our own, after ITU-T X.690: tags of one to three bytes (``0x75``, ``0x5F1F``,
``0x7F61``), written as the integer of their bytes the way ICAO tables write them; definite lengths
in short or long form (up to four length bytes). The indefinite form is refused: ICAO 9303 requires
definite lengths, and a reader that accepted it would have to search for an end the sender chose.

Input is attacker-controlled. A length is checked against the bytes that are left before
anything is sliced, values are views of the input (nothing is copied or allocated from a
claimed length), and callers bound how many children they take.
"""

from __future__ import annotations

from dataclasses import dataclass

from safepassage.travel_document.errors import DocumentTooLarge, MalformedDocument

__all__ = [
    "Tlv",
    "children",
    "decode_one",
    "decode_unsigned",
    "encode",
    "encode_unsigned",
    "find",
    "require",
]

_MAX_TAG_BYTES = 3
_MAX_LENGTH_BYTES = 4
# Children of one element: a DG2 holds a handful of images, a 39794 block a dozen fields.
DEFAULT_MAX_CHILDREN = 64


@dataclass(frozen=True)
class Tlv:
    """One element: its tag (as ICAO writes it, e.g. 0x7F61), whether it is constructed, its value."""

    tag: int
    constructed: bool
    value: bytes

    def encoded(self) -> bytes:
        return encode(self.tag, self.value)


def _tag_at(data: bytes, offset: int, what: str) -> tuple[int, bool, int]:
    """(tag, constructed, offset after the tag)."""
    if offset >= len(data):
        raise MalformedDocument(f"{what}: truncated, a tag was expected at offset {offset}")
    first = data[offset]
    tag, position = first, offset + 1
    if first & 0x1F == 0x1F:  # the tag number goes on in the following bytes
        while True:
            if position >= len(data):
                raise MalformedDocument(f"{what}: truncated inside the tag at offset {offset}")
            if position - offset >= _MAX_TAG_BYTES:
                raise MalformedDocument(
                    f"{what}: the tag at offset {offset} is longer than {_MAX_TAG_BYTES} bytes"
                )
            byte = data[position]
            tag, position = (tag << 8) | byte, position + 1
            if not byte & 0x80:
                break
    return tag, bool(first & 0x20), position


def _length_at(data: bytes, offset: int, what: str) -> tuple[int, int]:
    """(length, offset after the length field)."""
    if offset >= len(data):
        raise MalformedDocument(f"{what}: truncated, a length was expected at offset {offset}")
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    if first == 0x80:
        raise MalformedDocument(f"{what}: indefinite length at offset {offset} (ICAO 9303 requires definite)")
    count = first & 0x7F
    if count > _MAX_LENGTH_BYTES:
        raise MalformedDocument(f"{what}: a length field of {count} bytes at offset {offset}")
    end = offset + 1 + count
    if end > len(data):
        raise MalformedDocument(f"{what}: truncated inside the length at offset {offset}")
    return int.from_bytes(data[offset + 1 : end], "big"), end


def _read(data: bytes, offset: int, what: str) -> tuple[Tlv, int]:
    """The element at ``offset`` and the offset after it; its length checked against what is left."""
    tag, constructed, position = _tag_at(data, offset, what)
    length, position = _length_at(data, position, what)
    if length > len(data) - position:
        raise MalformedDocument(
            f"{what}: the element at offset {offset} (tag {tag:X}) claims {length} bytes;"
            f" {len(data) - position} are left"
        )
    return Tlv(tag, constructed, data[position : position + length]), position + length


def decode_one(data: bytes, what: str, tag: int | None = None, max_bytes: int | None = None) -> Tlv:
    """The one element ``data`` holds, nothing before or after it; of ``tag`` where given."""
    if max_bytes is not None and len(data) > max_bytes:
        raise DocumentTooLarge(f"{what} is {len(data)} bytes; at most {max_bytes} are read")
    element, end = _read(bytes(data), 0, what)
    if end != len(data):
        raise MalformedDocument(f"{what}: {len(data) - end} bytes follow its element")
    if tag is not None and element.tag != tag:
        raise MalformedDocument(f"{what}: tag {element.tag:X} where {tag:X} was expected")
    return element


def children(parent: Tlv, what: str, max_children: int = DEFAULT_MAX_CHILDREN) -> list[Tlv]:
    """The elements inside a constructed element, in order."""
    if not parent.constructed:
        raise MalformedDocument(
            f"{what}: tag {parent.tag:X} is primitive where a constructed one was expected"
        )
    found: list[Tlv] = []
    offset = 0
    while offset < len(parent.value):
        if len(found) >= max_children:
            raise DocumentTooLarge(f"{what} holds more than {max_children} elements")
        element, offset = _read(parent.value, offset, what)
        found.append(element)
    return found


def find(elements: list[Tlv], tag: int) -> Tlv | None:
    """The one element of ``tag`` among ``elements``, None if absent (two of them: malformed)."""
    matching = [e for e in elements if e.tag == tag]
    if len(matching) > 1:
        raise MalformedDocument(f"tag {tag:X} appears {len(matching)} times where one is allowed")
    return matching[0] if matching else None


def require(elements: list[Tlv], tag: int, what: str) -> Tlv:
    """The one element of ``tag`` among ``elements``; MalformedDocument naming ``what`` if absent."""
    element = find(elements, tag)
    if element is None:
        raise MalformedDocument(f"{what} is missing (tag {tag:X})")
    return element


def decode_unsigned(value: bytes, what: str, maximum: int) -> int:
    """A non-negative INTEGER's content octets, at most ``maximum``."""
    if not value or len(value) > 8:
        raise MalformedDocument(f"{what}: an integer of {len(value)} bytes")
    number = int.from_bytes(value, "big", signed=True)
    if number < 0 or number > maximum:
        raise MalformedDocument(f"{what}: {number} is outside 0..{maximum}")
    return number


def _tag_bytes(tag: int) -> bytes:
    size = max(1, (tag.bit_length() + 7) // 8)
    if size > _MAX_TAG_BYTES:
        raise ValueError(f"tag {tag:X} is longer than {_MAX_TAG_BYTES} bytes")
    return tag.to_bytes(size, "big")


def _length_bytes(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    if len(body) > _MAX_LENGTH_BYTES:
        raise ValueError(f"a length of {length} bytes cannot be written")
    return bytes([0x80 | len(body)]) + body


def encode(tag: int, value: bytes) -> bytes:
    """One element, in the definite form with the shortest length (as DER writes it)."""
    return _tag_bytes(tag) + _length_bytes(len(value)) + value


def encode_unsigned(number: int) -> bytes:
    """A non-negative INTEGER's content octets, fewest bytes (a leading zero where the top bit is set)."""
    if number < 0:
        raise ValueError("only non-negative integers are written here")
    return number.to_bytes(number.bit_length() // 8 + 1, "big")
