"""EF.DG1 (ICAO 9303 part 10, 4.7.1): the MRZ as the chip holds it, read and written.

``61 L { 5F1F L <the MRZ lines, concatenated, ASCII> }``: 90 characters for TD1, 72 for TD2 and
88 for TD3. The MRZ is parsed and every check digit checked (safepassage.travel_document.mrz).
"""

from __future__ import annotations

from safepassage.travel_document import ber
from safepassage.travel_document.errors import MalformedDocument
from safepassage.travel_document.mrz import Mrz, MrzFormat, parse

__all__ = ["DG1_TAG", "MAX_DG1_BYTES", "read_dg1", "write_dg1"]

DG1_TAG = 0x61
MRZ_TAG = 0x5F1F
# The largest MRZ is 90 characters; headroom for the tags, nothing more.
MAX_DG1_BYTES = 256
_LINES = {fmt.shape[0] * fmt.shape[1]: fmt.shape for fmt in MrzFormat}


def read_dg1(data: bytes) -> Mrz:
    """The MRZ in DG1 bytes, checked; MalformedDocument (naming the field) if anything is wrong."""
    group = ber.decode_one(data, "DG1", DG1_TAG, max_bytes=MAX_DG1_BYTES)
    mrz = ber.require(ber.children(group, "DG1", max_children=4), MRZ_TAG, "DG1's MRZ")
    shape = _LINES.get(len(mrz.value))
    if shape is None:
        raise MalformedDocument(f"DG1: an MRZ of {len(mrz.value)} characters (90, 72 or 88 are read)")
    try:
        text = mrz.value.decode("ascii")
    except UnicodeDecodeError:
        raise MalformedDocument("DG1: the MRZ is not ASCII") from None
    count, width = shape
    return parse([text[i * width : (i + 1) * width] for i in range(count)])


def write_dg1(lines: tuple[str, ...] | list[str]) -> bytes:
    """DG1 bytes holding these MRZ lines (checked first: a writer never makes what a reader refuses)."""
    parse(list(lines))
    return ber.encode(DG1_TAG, ber.encode(MRZ_TAG, "".join(lines).encode("ascii")))
