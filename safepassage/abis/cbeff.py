"""MOSIP's CBEFF XML (ISO/IEC 19785-3): the face BIRs of a datashare, each an ISO/IEC 19794-5 record.

The document is a root ``BIR`` holding one ``BIR`` per biometric; a face's ``BDBInfo/Type`` is
``Face`` and its ``BDB`` the record, base64 (MOSIP writes the URL-safe alphabet without padding;
both alphabets are read). The record is read by ``safepassage.travel_document``'s 19794-5 reader
(2005 edition; others are refused as invalid CBEFF). What MOSIP's spec calls "CBEFF has no data"
(11): no face BIR, or only empty BDBs; "invalid CBEFF format" (16): not XML, not a BIR, a BDB
that is not base64 or not a face record. Documents declaring a DTD or entities are refused before
parsing, so no entity is ever expanded.

:func:`write_cbeff` makes the same structure, for tests and the benchmark.
"""

from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence

from safepassage.abis.errors import AbisRefusal, FailureReason
from safepassage.travel_document import FaceImage, TravelDocumentError
from safepassage.travel_document.iso19794_5 import read_19794_5, write_19794_5

__all__ = ["NAMESPACE", "read_cbeff_faces", "write_cbeff"]

NAMESPACE = "http://standards.iso.org/iso-iec/19785/-3/ed-2/"
MAX_CBEFF_BYTES = 32 << 20
MAX_FACES = 8


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ElementTree.Element, name: str) -> ElementTree.Element | None:
    return next((c for c in element if _local(c.tag) == name), None)


def _bdb_bytes(text: str) -> bytes:
    compact = "".join(text.split())
    padded = compact + "=" * (-len(compact) % 4)
    alphabet = b"-_" if ("-" in compact or "_" in compact) else b"+/"
    try:
        return base64.b64decode(padded, altchars=alphabet, validate=True)
    except (binascii.Error, ValueError):
        raise AbisRefusal(FailureReason.INVALID_CBEFF, "a face BDB is not base64") from None


def read_cbeff_faces(document: bytes) -> list[FaceImage]:
    """Every face image of the document's face BIRs; raises AbisRefusal (11 or 16)."""
    if len(document) > MAX_CBEFF_BYTES:
        raise AbisRefusal(FailureReason.INVALID_CBEFF, f"CBEFF of {len(document)} bytes is over the limit")
    if not document.strip():
        raise AbisRefusal(FailureReason.CBEFF_HAS_NO_DATA, "the CBEFF document is empty")
    if b"<!DOCTYPE" in document or b"<!ENTITY" in document:
        raise AbisRefusal(FailureReason.INVALID_CBEFF, "the CBEFF document declares a DTD")
    try:
        root = ElementTree.fromstring(document)
    except ElementTree.ParseError:
        raise AbisRefusal(FailureReason.INVALID_CBEFF, "the CBEFF document is not XML") from None
    if _local(root.tag) != "BIR":
        raise AbisRefusal(FailureReason.INVALID_CBEFF, "the CBEFF document's root is not a BIR")
    faces: list[FaceImage] = []
    for bir in (c for c in root if _local(c.tag) == "BIR"):
        info = _child(bir, "BDBInfo")
        kind = None if info is None else _child(info, "Type")
        if kind is None or (kind.text or "").strip().lower() != "face":
            continue
        bdb = _child(bir, "BDB")
        text = "" if bdb is None else (bdb.text or "")
        if not text.strip():
            continue
        try:
            faces.extend(read_19794_5(_bdb_bytes(text)))
        except TravelDocumentError as error:
            raise AbisRefusal(
                FailureReason.INVALID_CBEFF, f"a face BDB is not a face record: {error}"
            ) from None
        if len(faces) > MAX_FACES:
            raise AbisRefusal(FailureReason.INVALID_CBEFF, f"more than {MAX_FACES} face images")
    if not faces:
        raise AbisRefusal(FailureReason.CBEFF_HAS_NO_DATA, "the CBEFF document holds no face data")
    return faces


def write_cbeff(faces: Sequence[FaceImage], *, empty_bdb: bool = False) -> bytes:
    """A CBEFF document with one face BIR per image (``empty_bdb``: the BIRs with empty BDBs)."""
    ElementTree.register_namespace("", NAMESPACE)
    root = ElementTree.Element(f"{{{NAMESPACE}}}BIR")
    ElementTree.SubElement(
        ElementTree.SubElement(root, f"{{{NAMESPACE}}}BIRInfo"), f"{{{NAMESPACE}}}Integrity"
    ).text = "false"
    for face in faces:
        bir = ElementTree.SubElement(root, f"{{{NAMESPACE}}}BIR")
        info = ElementTree.SubElement(bir, f"{{{NAMESPACE}}}BDBInfo")
        form = ElementTree.SubElement(info, f"{{{NAMESPACE}}}Format")
        ElementTree.SubElement(form, f"{{{NAMESPACE}}}Organization").text = "Mosip"
        ElementTree.SubElement(form, f"{{{NAMESPACE}}}Type").text = "8"
        ElementTree.SubElement(info, f"{{{NAMESPACE}}}Type").text = "Face"
        ElementTree.SubElement(info, f"{{{NAMESPACE}}}Purpose").text = "Enroll"
        record = b"" if empty_bdb else write_19794_5([face])
        ElementTree.SubElement(bir, f"{{{NAMESPACE}}}BDB").text = (
            base64.urlsafe_b64encode(record).rstrip(b"=").decode("ascii")
        )
    document: bytes = ElementTree.tostring(root, encoding="utf-8", xml_declaration=True)
    return document
