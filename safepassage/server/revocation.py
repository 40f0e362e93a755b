"""Revocations: revoked.json, the revocation check asked on every call, and revoking.

gRPC checks chains and validity at the handshake only; a connection outlives both, so
`RevocationList` is made to be asked on every call, and re-reads revoked.json as soon as it changes:
a revocation takes effect on the next call, with no restart. A missing or unreadable revoked.json
fails closed (RevocationsUnreadable), never "not revoked".

`revoke` records revocations under the PKI folder's lock and tells the change hook (the
transparency log) after the write: a revocation the log missed still protects, while one logged but
not in force would mislead the auditors.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from safepassage.core import atomic_file
from safepassage.server.certificate_index import (
    CertificateKind,
    CertificateRecord,
    ChangeHook,
    change_metadata,
    read_index,
)
from safepassage.server.pki_folder import (
    FORMAT_VERSION,
    CertificateNotFound,
    InvalidCertificateRequest,
    PkiCorrupt,
    PkiPaths,
    RevocationsUnreadable,
    format_serial,
    iso,
    locked,
    parse_serial,
    parse_time,
    utc_now,
)

__all__ = ["Revocation", "RevocationList", "read_revoked", "revoke", "write_revoked"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Revocation:
    serial: int
    revoked_at: datetime.datetime
    client_id: str | None  # None when the serial is not in the index


def read_revoked(paths: PkiPaths) -> dict[int, datetime.datetime]:
    """Revoked serial -> when it was revoked; RevocationsUnreadable if the file cannot be read."""
    path = paths.revoked
    try:
        data = path.read_bytes()
    except OSError as error:
        raise RevocationsUnreadable(f"cannot read the revocation list {path}: {error.strerror}") from None
    return _parse_revocations(data, path)


def write_revoked(paths: PkiPaths, entries: dict[int, datetime.datetime]) -> None:
    """Replace revoked.json with `entries` (atomically; the caller holds the folder's lock)."""
    atomic_file.replace(paths.revoked, _revocations_json(entries))


def revoke(paths: PkiPaths, target: int | str, on_change: ChangeHook | None = None) -> list[Revocation]:
    """Revoke a serial (int), or a client id's certificates / a hex serial (str).

    Returns what this call revoked: empty when everything named was
    already revoked. An int serial missing from the index is still
    recorded (a certificate issued before the index was lost stays
    revocable); a str must name a client id or serial in the index.
    """
    with locked(paths):
        records = read_index(paths)
        revoked = read_revoked(paths)
        targets = _resolve(target, records)
        now = utc_now()
        fresh = [
            Revocation(serial, now, record.client_id if record else None)
            for serial, record in targets
            if serial not in revoked
        ]
        if fresh:
            revoked.update({r.serial: now for r in fresh})
            write_revoked(paths, revoked)
    by_serial = {r.serial: r for r in records}
    for revocation in fresh:
        # After the write, unlike issue: a revocation the log missed still
        # protects; one logged but not in force would mislead the auditors.
        record = by_serial.get(revocation.serial)
        metadata = change_metadata(record) if record else {"serial": format_serial(revocation.serial)}
        if on_change is not None:
            on_change("certificate.revoke", metadata)
    return fresh


def _resolve(
    target: int | str, records: list[CertificateRecord]
) -> list[tuple[int, CertificateRecord | None]]:
    by_serial = {r.serial: r for r in records}
    if isinstance(target, int):
        return [(target, by_serial.get(target))]
    by_id = [
        r
        for r in records
        if r.kind in (CertificateKind.CLIENT, CertificateKind.CONSOLE) and r.client_id == target
    ]
    try:
        serial: int | None = parse_serial(target)
    except InvalidCertificateRequest:
        serial = None
    as_serial = by_serial.get(serial) if serial is not None else None
    if by_id and as_serial is not None:
        raise InvalidCertificateRequest(
            f"{target!r} is both a client id and a serial; pass the serial as 0x{target}"
        )
    if by_id:
        return [(r.serial, r) for r in by_id]
    if as_serial is not None:
        return [(as_serial.serial, as_serial)]
    raise CertificateNotFound(f"no client id or certificate serial {target!r} in the index")


def _revocations_json(entries: dict[int, datetime.datetime]) -> bytes:
    document = {
        "version": FORMAT_VERSION,
        "revoked": [
            {"serial": format_serial(serial), "revoked_at": iso(at)}
            for serial, at in sorted(entries.items(), key=lambda item: item[1])
        ],
    }
    return json.dumps(document, indent=1).encode() + b"\n"


def _parse_revocations(data: bytes, path: Path) -> dict[int, datetime.datetime]:
    try:
        document = json.loads(data)
        if document.get("version") != FORMAT_VERSION:
            raise ValueError("unknown version")
        return {
            parse_serial(entry["serial"]): parse_time(entry["revoked_at"]) for entry in document["revoked"]
        }
    except (ValueError, KeyError, TypeError, AttributeError, InvalidCertificateRequest):
        raise PkiCorrupt(f"{path} is not a revocation list") from None


class RevocationList:
    """The revoked serials of a PKI, re-read whenever revoked.json changes.

    `is_revoked` costs one fstat per call while the file is unchanged. The file
    is only ever replaced (a new inode) and only grows, so any change shows in
    the (inode, size, mtime) key even within one mtime tick. A missing or
    unreadable file fails closed: every check raises rather than answer "not
    revoked" from nothing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._key: tuple[int, int, int, int] | None = None
        self._serials: frozenset[int] = frozenset()
        self._refresh()

    @classmethod
    def open(cls, pki_folder: Path) -> RevocationList:
        return cls(PkiPaths(pki_folder).revoked)

    def _stat_key(self, stat: os.stat_result) -> tuple[int, int, int, int]:
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)

    def _refresh(self) -> frozenset[int]:
        try:
            key = self._stat_key(os.stat(self.path))
        except OSError as error:
            raise RevocationsUnreadable(
                f"cannot read the revocation list {self.path}: {error.strerror}"
            ) from None
        if key == self._key:
            return self._serials
        with self._lock:
            try:
                with open(self.path, "rb") as file:
                    # Key and content from the same open file: a rename in
                    # between is seen as a change on the next call.
                    key = self._stat_key(os.fstat(file.fileno()))
                    if key == self._key:
                        return self._serials
                    data = file.read()
            except OSError as error:
                raise RevocationsUnreadable(
                    f"cannot read the revocation list {self.path}: {error.strerror}"
                ) from None
            serials = frozenset(_parse_revocations(data, self.path))
            if self._key is not None:
                log.info("revocation list reloaded: %d revoked certificates", len(serials))
            self._serials, self._key = serials, key
            return serials

    def is_revoked(self, serial: int) -> bool:
        return serial in self._refresh()

    def serials(self) -> frozenset[int]:
        return self._refresh()
