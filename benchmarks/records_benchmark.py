"""Protected records benchmark: sealing and storing, KEK rotation, erasure, opening and PIN checks.

For each vault size N it builds real files in a temporary folder: a FileKeyring
(the KEK), a RecordVault (SQLite: WAL, synchronous=FULL, secure_delete) and a
RecordCipher, and stores N records the way ProtectedRecords.enrol does, straight
into the vault (no matcher, no gallery): a fresh data key per record, wrapped
under the current KEK version; the record, the holder's secrets and three
128-d templates each sealed under it; a recovery tag and four consent rows;
one transaction per record. Then, at N:

    insert    seal + wrap + insert of each record (records/s, per-record p50/p99)
    open      one record opened as ProtectedRecords.open does: vault.records.get, unwrap,
              open, ProtectedRecord.from_bytes (warm cache, random records)
    size      vault file bytes per record, after a checkpoint
    rotation  KeyCustodian.rotate(): new KEK version, every data key unwrapped and
              rewrapped in one transaction, the old version destroyed, WAL truncated;
              twice: the vault's first rotation (1 -> 2) rewrites every row in full
              (SQLite stores the integer 1 in no bytes), a later one does not
    erasure   what safepassage.enrolment.erasure.erase does once the templates are gone: a
              rotation whose before_destroy signs the receipt and calls vault.erasures.erase
              (row deleted, tombstone left, WAL truncated)

Two records: "text" (about 3 KB of canonical JSON: personal details, three
documents, three entitlements with their terms, an NGO contact; no
photos) and "photo" (the same with a 150 KB JPEG of the passport's data page,
about 200 KB once base64'd). Photo vaults are measured at --photo-sizes only
(default 1,000 and 10,000: 10,000 of them are already 2 GB on disk).

The holder's PIN hashes (two scrypt hashes, about 100 ms per enrolment) are made
once and their bytes sealed into every record under its own key: the insert rate
is that of the storage path, not of PIN hashing. PIN checks (HolderSecrets.check,
two scrypt hashes whatever the PIN) do not depend on N and are timed once, with
ordinary, duress and wrong PINs interleaved: the ordinary and duress medians must
agree within noise. Results: a table on stdout and a JSON file.

    uv run python benchmarks/records_benchmark.py
    uv run python benchmarks/records_benchmark.py --sizes 1000,10000 --photo-sizes 1000 --out /tmp/r.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import logging
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date
from pathlib import Path
from typing import TypeVar

import cryptography
import numpy as np
from cryptography.hazmat.backends.openssl.backend import backend as openssl_backend
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safepassage.enrolment.consent import Scope, ScopeGrant
from safepassage.enrolment.custodian import KeyCustodian, Rotation
from safepassage.enrolment.errors import HolderNotVerified, RecordErased
from safepassage.enrolment.holder_secrets import HolderSecrets, PinKind, new_recovery_code, recovery_tag
from safepassage.enrolment.kek import FileKeyring
from safepassage.enrolment.receipts import ReceiptKind, StationKey
from safepassage.enrolment.record import (
    DocumentKind,
    Entitlement,
    EntitlementKind,
    IdentityDocument,
    NgoContact,
    PersonalDetails,
    PossessionStatus,
    ProtectedRecord,
)
from safepassage.enrolment.record_cipher import SEALED_OVERHEAD, RecordCipher
from safepassage.enrolment.service import _RECORD, _SECRETS, _TEMPLATES, new_record_id, templates_to_bytes
from safepassage.enrolment.vault import RecordVault
from safepassage.enrolment.vault_consents import ConsentEntry
from safepassage.enrolment.vault_erasures import Tombstone
from safepassage.enrolment.vault_records import StoredRecord

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "records.json"
DEFAULT_SIZES = [1_000, 10_000, 100_000]
DEFAULT_PHOTO_SIZES = [1_000, 10_000]
QUICK_SIZES = [50, 200]
QUICK_PHOTO_SIZES = [50]
GALLERY = "protected-benchmark"
ORGANISATION = "ngo-caseworker-bench"
TEMPLATES_PER_RECORD = 3  # faces taken at enrolment
DIMENSION = 128  # the default face model's descriptor
PHOTO_BYTES = 150_000  # a JPEG of a passport's data page; base64 makes it about 200 KB
T = TypeVar("T")
PIN, DURESS_PIN, WRONG_PIN = "482913", "739164", "111111"
CONSENT_TEXT_SHA256 = hashlib.sha256(b"benchmark consent text").hexdigest()
GRANTED = (ScopeGrant(Scope.STORE), ScopeGrant(Scope.VERIFY_AT_BORDER), ScopeGrant(Scope.DUPLICATE_CHECK))
REFUSED = (ScopeGrant(Scope.SHARE, "la-strada"),)

WORK_PERMIT_TERMS = (
    "Employer: Gulf Horizon Contracting LLC, Doha. Position: construction labourer (general), site"
    " C-14, Lusail. Contract of 24 months from the date of arrival, renewable once by agreement.\n"
    "Hours: 8 hours a day, 6 days a week; overtime paid at 125% of the basic hourly wage, at most"
    " 2 hours a day. Rest: one full day a week (Friday) and 21 days of paid annual leave.\n"
    "Wage: QAR 1,200 basic a month, paid by bank transfer (Wage Protection System) by the 7th of"
    " the following month; food allowance QAR 300 a month; housing provided by the employer"
    " (shared room, at most 4 workers) and transport to the site.\n"
    "Recruitment fees: none to be charged to the worker; air ticket to Doha and home at the end of"
    " the contract paid by the employer. Passport to be kept by the worker (Law No. 21 of 2015).\n"
    "Medical insurance and the residence permit fee at the employer's expense. Notice: one month"
    " either side after the probation period of 6 months."
)
VISA_TERMS = (
    "Single-entry work visa tied to the sponsoring employer above; entry within 90 days of issue."
    " The holder must complete the medical examination and biometric enrolment within 30 days of"
    " arrival, after which the residence permit is issued for the length of the contract. A change"
    " of employer is allowed after 6 months with notice, without the employer's permission."
)
RESIDENCE_TERMS = (
    "Residence permit for work, sponsored by the employer above, valid for the length of the work"
    " permit. The holder may leave and re-enter the country without an exit permit. The permit is"
    " cancelled if the contract ends and the holder does not find a new employer within 90 days;"
    " the employer must not keep the permit card or the passport. Family visit visas allowed."
)


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


# -- the records -------------------------------------------------------------------


def document_photo(seed: int) -> bytes:
    """A stand-in for a JPEG of a document page: JPEG markers around incompressible bytes, as in a real one.

    Records accept photos by magic bytes and never decode them, so the bytes only need the size.
    """
    body = random.Random(seed).randbytes(PHOTO_BYTES - 6)
    return b"\xff\xd8\xff\xe0" + body + b"\xff\xd9"


def sample_record(photo: bytes | None) -> ProtectedRecord:
    """A realistic record: details, three documents (two withheld), three entitlements, a contact."""
    details = PersonalDetails("Sita Kumari", "Tamang", date(1996, 4, 12), "NPL", "ne-NP")
    documents = (
        IdentityDocument(
            DocumentKind.PASSPORT,
            "PA7781234",
            "NPL",
            date(2030, 6, 30),
            PossessionStatus.WITHHELD_BY_EMPLOYER,
            photo,
        ),
        IdentityDocument(
            DocumentKind.NATIONAL_ID, "NP-12-34-56789", "NPL", None, PossessionStatus.HELD_BY_HOLDER
        ),
        IdentityDocument(
            DocumentKind.RESIDENCE_PERMIT,
            "QA 29652401877",
            "QAT",
            date(2026, 1, 31),
            PossessionStatus.WITHHELD_BY_EMPLOYER,
        ),
    )
    entitlements = (
        Entitlement(
            EntitlementKind.WORK_PERMIT,
            "WP-2024-55120",
            "Gulf Horizon Contracting LLC",
            WORK_PERMIT_TERMS,
            date(2024, 2, 1),
            date(2026, 1, 31),
        ),
        Entitlement(
            EntitlementKind.VISA,
            "QV-2023-0081-4471",
            "Gulf Horizon Contracting LLC",
            VISA_TERMS,
            date(2023, 12, 1),
            date(2024, 2, 29),
        ),
        Entitlement(
            EntitlementKind.RESIDENCE_PERMIT,
            "QID 29652401877",
            "Gulf Horizon Contracting LLC",
            RESIDENCE_TERMS,
            date(2024, 2, 20),
            date(2026, 1, 31),
        ),
    )
    contact = NgoContact(
        "La Strada International", "+31 20 688 1414", "help@lastradainternational.org", "la-strada-hotline"
    )
    return ProtectedRecord(details, documents, entitlements, contact)


@dataclass(frozen=True)
class RecordShape:
    """One kind of record and the bytes sealed into every copy of it."""

    kind: str
    record_bytes: int
    sealed_record_bytes: int
    secrets_bytes: int
    templates_bytes: int
    serialise_ms: float  # ProtectedRecord.to_bytes, once (not in the insert loop)
    parse_ms: float  # ProtectedRecord.from_bytes, once


@dataclass
class Payload:
    kind: str
    record: bytes
    secrets: bytes
    templates: bytes
    shape: RecordShape


def make_payload(kind: str, record: ProtectedRecord, secrets: bytes, seed: int) -> Payload:
    started = time.perf_counter()
    data = record.to_bytes()
    serialise_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    ProtectedRecord.from_bytes(data)
    parse_ms = (time.perf_counter() - started) * 1000
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((TEMPLATES_PER_RECORD, DIMENSION)).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    templates = templates_to_bytes(matrix)
    sealed = len(data) + SEALED_OVERHEAD
    shape = RecordShape(kind, len(data), sealed, len(secrets), len(templates), serialise_ms, parse_ms)
    return Payload(kind, data, secrets, templates, shape)


# -- measuring ---------------------------------------------------------------------


@dataclass(frozen=True)
class Latency:
    count: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        return cls(
            count=int(ms.size),
            p50_ms=float(np.percentile(ms, 50)),
            p99_ms=float(np.percentile(ms, 99)),
            mean_ms=float(ms.mean()),
            max_ms=float(ms.max()),
        )


@dataclass(frozen=True)
class Inserted:
    records: int
    seconds: float
    per_second: float
    latency: Latency  # one record: seal + wrap + insert (one fsynced transaction)


@dataclass(frozen=True)
class Opened:
    latency: Latency  # vault.records.get + unwrap + open + parse, as ProtectedRecords.open
    get: Latency  # vault.records.get alone (SQLite, warm page cache)
    unwrap_and_open: Latency  # unwrap the data key (AES-GCM) + open the sealed record (HKDF, AES-GCM)
    parse: Latency  # ProtectedRecord.from_bytes


@dataclass(frozen=True)
class VaultSize:
    main_bytes: int
    wal_bytes: int
    bytes_per_record: float


@dataclass(frozen=True)
class Rotated:
    """Two rotations in a row: the vault's first (KEK version 1 -> 2), then a steady-state one (2 -> 3).

    They differ: SQLite stores the integer 1 in no bytes, so the first rotation changes the size of
    every row and rewrites each in full, photos included; a later rotation changes a row in place and
    writes only the page holding its key (until the version number next needs a wider integer: 128).
    """

    keys_rewrapped: int
    seconds: float  # the steady-state rotation (2 -> 3)
    per_key_us: float
    bytes_written: int | None  # to storage by this process during the rotation (/proc/self/io)
    first_seconds: float  # the first rotation (1 -> 2)
    first_per_key_us: float
    first_bytes_written: int | None
    # Measured again separately after the rotations: reading every wrapped key, and the crypto alone.
    read_keys_s: float
    rewrap_crypto_s: float
    rewrap_crypto_per_key_us: float
    rest_s: float  # of the steady-state rotation: one UPDATE transaction, two keyring writes, checkpoint
    kek_versions_destroyed: tuple[int, ...]  # by both rotations


@dataclass(frozen=True)
class Erased:
    seconds: float  # the whole erasure: rotation + receipt + vault.erasures.erase (WAL truncated) + destroy
    keys_rewrapped: int  # every record's, the erased one's too: its row is deleted after the rewrap
    per_key_us: float
    # vault.erasures.erase alone: DELETE, tombstone, then the WAL checkpoint and truncate, which also copies
    # the pages the rotation just rewrote into the main file
    vault_erase_ms: float
    bytes_written: int | None
    kek_versions_destroyed: tuple[int, ...]
    erased_record_gone: bool  # vault.records.get raises RecordErased
    survivor_opens: bool  # another record still opens under the new KEK version
    live_kek_versions: int
    records_left: int


@dataclass(frozen=True)
class SizeResult:
    kind: str
    size: int
    insert: Inserted
    open: Opened
    vault: VaultSize
    rotation: Rotated
    erasure: Erased


@dataclass(frozen=True)
class PinChecks:
    per_kind: int
    create_ms: float  # HolderSecrets.create: the two hashes made at enrolment
    ordinary: Latency
    duress: Latency
    wrong: Latency
    duress_minus_ordinary_p50_ms: float
    duress_minus_ordinary_p50_share: float
    ordinary_iqr_ms: float  # the noise to judge that difference by


def written_bytes() -> int | None:
    """Bytes this process has caused to be written to storage so far (Linux /proc/self/io)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return None


def written_since(start: int | None) -> int | None:
    end = written_bytes()
    return None if start is None or end is None else end - start


class Bench:
    """One vault of N records of one kind, on real files, and its measurements."""

    def __init__(self, folder: Path, payload: Payload) -> None:
        self.keys = FileKeyring.open(folder / "kek.json", create=True)
        self.vault = RecordVault.open(folder / "records.sqlite")
        self.cipher = RecordCipher(self.keys)
        self.custodian = KeyCustodian(self.vault, self.keys, self.cipher)
        self.station = StationKey(Ed25519PrivateKey.generate(), "bench-station")
        self.lookup_key = os.urandom(32)
        self.payload = payload
        self.record_ids: list[str] = []

    def close(self) -> None:
        self.vault.close()

    def insert_one(self) -> None:
        """One enrolment's storage path as ProtectedRecords.enrol has it (the scrypt hashes made once)."""
        payload = self.payload
        record_id = new_record_id()
        code = new_recovery_code()
        now = time.time()
        with self.custodian.lock:
            key, wrapped = self.cipher.new_key(record_id)
            stored = StoredRecord(
                record_id=record_id,
                gallery_id=GALLERY,
                organisation=ORGANISATION,
                templates=TEMPLATES_PER_RECORD,
                wrapped_key=wrapped,
                sealed_record=RecordCipher.seal(key, _RECORD, payload.record),
                sealed_secrets=RecordCipher.seal(key, _SECRETS, payload.secrets),
                sealed_templates=RecordCipher.seal(key, _TEMPLATES, payload.templates),
                created_at=now,
            )
            entries = [ConsentEntry(g, True, "ne-NP", CONSENT_TEXT_SHA256, now) for g in GRANTED] + [
                ConsentEntry(g, False, "ne-NP", CONSENT_TEXT_SHA256, now) for g in REFUSED
            ]
            self.vault.records.insert(stored, recovery_tag(self.lookup_key, code), entries)
        self.record_ids.append(record_id)

    def insert(self, size: int) -> Inserted:
        latencies: list[float] = []
        report_every = max(size // 5, 1)
        started = time.perf_counter()
        for n in range(size):
            before = time.perf_counter()
            self.insert_one()
            latencies.append(time.perf_counter() - before)
            if size >= 10_000 and (n + 1) % report_every == 0:
                log(f"  {n + 1:,} inserted ({(n + 1) / (time.perf_counter() - started):,.0f}/s)")
        seconds = time.perf_counter() - started
        return Inserted(size, seconds, size / seconds, Latency.of(latencies))

    def open_one(self, record_id: str) -> tuple[float, float, float, float]:
        """Seconds for (the whole open, get, unwrap + open, parse): ProtectedRecords.open."""
        started = time.perf_counter()
        stored = self.vault.records.get(record_id)
        fetched = time.perf_counter()
        key = self.cipher.data_key(record_id, stored.wrapped_key)
        data = RecordCipher.open(key, _RECORD, stored.sealed_record)
        opened = time.perf_counter()
        record = ProtectedRecord.from_bytes(data)
        done = time.perf_counter()
        if record.contact.referral_channel != "la-strada-hotline":
            raise RuntimeError("opened a record that does not hold what was sealed")
        return done - started, fetched - started, opened - fetched, done - opened

    def opens(self, count: int, rng: random.Random) -> Opened:
        chosen = rng.sample(self.record_ids, min(count, len(self.record_ids)))
        for record_id in chosen[:5]:  # warm-up; the page cache is warm anyway after the inserts
            self.open_one(record_id)
        timings = [self.open_one(record_id) for record_id in chosen]
        whole, get, crypto, parse = (Latency.of(column) for column in zip(*timings, strict=True))
        return Opened(whole, get, crypto, parse)

    def size_on_disk(self) -> VaultSize:
        self.vault.purge_journal()
        path = self.vault.path
        wal = path.with_name(path.name + "-wal")
        main, journal = path.stat().st_size, wal.stat().st_size if wal.exists() else 0
        return VaultSize(main, journal, (main + journal) / len(self.record_ids))

    def rotate(self) -> tuple[Rotation, float, int | None]:
        """One KeyCustodian.rotate(): the result, its seconds and the bytes it wrote."""
        size = len(self.record_ids)
        before = self.keys.current_version()
        io_start = written_bytes()
        started = time.perf_counter()
        rotated = self.custodian.rotate()
        seconds = time.perf_counter() - started
        written = written_since(io_start)
        if rotated.rewrapped != size or rotated.destroyed != (before,):
            raise RuntimeError(f"the rotation rewrapped {rotated.rewrapped} of {size} keys: {rotated}")
        return rotated, seconds, written

    def rotation(self) -> Rotated:
        size = len(self.record_ids)
        first, first_s, first_written = self.rotate()
        rotated, seconds, written = self.rotate()
        started = time.perf_counter()
        stale = self.vault.data_keys.wrapped()
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        for record_id, wrapped in stale:  # in memory only: the results are dropped
            self.cipher.rewrap(record_id, wrapped)
        crypto_s = time.perf_counter() - started
        return Rotated(
            keys_rewrapped=rotated.rewrapped,
            seconds=seconds,
            per_key_us=seconds / size * 1e6,
            bytes_written=written,
            first_seconds=first_s,
            first_per_key_us=first_s / size * 1e6,
            first_bytes_written=first_written,
            read_keys_s=read_s,
            rewrap_crypto_s=crypto_s,
            rewrap_crypto_per_key_us=crypto_s / size * 1e6,
            rest_s=max(seconds - read_s - crypto_s, 0.0),
            kek_versions_destroyed=first.destroyed + rotated.destroyed,
        )

    def erasure(self, rng: random.Random) -> Erased:
        """safepassage.enrolment.erasure.erase once the templates are gone: journal the erasure, rotate,
        and in before_destroy sign the receipt and erase the row (tombstone keeping the receipt, WAL
        truncated); then the old KEK version is destroyed and the journal entry removed."""
        record_id = self.record_ids.pop(rng.randrange(len(self.record_ids)))
        erase_s: list[float] = []

        def shred(doomed: tuple[int, ...]) -> None:
            now = datetime.datetime.now(UTC).replace(microsecond=0)
            receipt = self.station.sign(
                ReceiptKind.ERASURE,
                record_id,
                {
                    "erased_at": now.isoformat(),
                    "templates_removed": str(TEMPLATES_PER_RECORD),
                    "kek_versions_destroyed": tuple(str(v) for v in doomed),
                    "requested_by": "holder",
                },
                now=now,
            ).to_text()
            digest = hashlib.sha256(receipt.encode("utf-8")).hexdigest()
            started = time.perf_counter()
            self.vault.erasures.erase(Tombstone(record_id, now.timestamp(), "holder", digest, receipt))
            erase_s.append(time.perf_counter() - started)

        io_start = written_bytes()
        started = time.perf_counter()
        self.vault.erasures.begin(record_id, "holder", time.time())
        with self.custodian.lock:
            rotated = self.custodian.rotate(before_destroy=shred)
        self.vault.erasures.end(record_id)
        seconds = time.perf_counter() - started
        written = written_since(io_start)
        try:
            self.vault.records.get(record_id)
            gone = False
        except RecordErased:
            gone = True
        self.open_one(rng.choice(self.record_ids))  # raises if the survivors lost their keys
        return Erased(
            seconds=seconds,
            keys_rewrapped=rotated.rewrapped,
            per_key_us=seconds / max(rotated.rewrapped, 1) * 1e6,
            vault_erase_ms=erase_s[0] * 1000,
            bytes_written=written,
            kek_versions_destroyed=rotated.destroyed,
            erased_record_gone=gone,
            survivor_opens=True,
            live_kek_versions=len(self.keys.versions()),
            records_left=self.vault.records.count(),
        )


def measure(kind: str, size: int, payload: Payload, options: Options, seed: int) -> SizeResult:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="records-bench-", dir=options.data_dir) as folder:
        bench = Bench(Path(folder), payload)
        try:
            log(f"{kind} records x {size:,}: inserting")
            inserted = bench.insert(size)
            log(f"  {inserted.per_second:,.0f} records/s; opening {min(options.opens, size)}")
            opened = bench.opens(options.opens, rng)
            disk = bench.size_on_disk()
            log("  rotating the KEK twice")
            rotated = bench.rotation()
            log(f"  rotations {rotated.first_seconds:.2f} s, {rotated.seconds:.2f} s; erasing one record")
            erased = bench.erasure(rng)
        finally:
            bench.close()
    return SizeResult(kind, size, inserted, opened, disk, rotated, erased)


def pin_checks(count: int) -> PinChecks:
    """HolderSecrets.check on ordinary, duress and wrong PINs, interleaved (the order rotating)."""
    started = time.perf_counter()
    holder = HolderSecrets.create(PIN, DURESS_PIN)
    create_ms = (time.perf_counter() - started) * 1000

    def ordinary() -> None:
        if holder.check(PIN) is not PinKind.ORDINARY:
            raise RuntimeError("the ordinary PIN was not recognised")

    def duress() -> None:
        if holder.check(DURESS_PIN) is not PinKind.DURESS:
            raise RuntimeError("the duress PIN was not recognised")

    def wrong() -> None:
        with contextlib.suppress(HolderNotVerified):
            holder.check(WRONG_PIN)
            raise RuntimeError("a wrong PIN was accepted")

    checks: list[tuple[str, Callable[[], None]]] = [
        ("ordinary", ordinary),
        ("duress", duress),
        ("wrong", wrong),
    ]
    timings: dict[str, list[float]] = {name: [] for name, _ in checks}
    for _, check in checks:  # warm-up
        check()
    for n in range(count):
        for name, check in checks[n % 3 :] + checks[: n % 3]:
            before = time.perf_counter()
            check()
            timings[name].append(time.perf_counter() - before)
    ordinary_ms = np.asarray(timings["ordinary"]) * 1000
    q75, q25 = np.percentile(ordinary_ms, [75, 25])
    median = float(np.median(ordinary_ms))
    difference = float(np.median(np.asarray(timings["duress"]) * 1000)) - median
    return PinChecks(
        per_kind=count,
        create_ms=create_ms,
        ordinary=Latency.of(timings["ordinary"]),
        duress=Latency.of(timings["duress"]),
        wrong=Latency.of(timings["wrong"]),
        duress_minus_ordinary_p50_ms=difference,
        duress_minus_ordinary_p50_share=difference / median,
        ordinary_iqr_ms=float(q75 - q25),
    )


def pin_attempt_writes(count: int, payload: Payload, data_dir: Path | None) -> Latency:
    """What a PIN check adds beside its two hashes: the attempt reserved, then reset (two vault writes)."""
    with tempfile.TemporaryDirectory(prefix="records-bench-", dir=data_dir) as folder:
        bench = Bench(Path(folder), payload)
        try:
            bench.insert(100)
            timings: list[float] = []
            for n in range(count):
                record_id = bench.record_ids[n % len(bench.record_ids)]
                before = time.perf_counter()
                bench.vault.pins.reserve(record_id, time.time(), 5)
                bench.vault.pins.passed(record_id)
                timings.append(time.perf_counter() - before)
        finally:
            bench.close()
    return Latency.of(timings)


# -- report ------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor()


def machine_info() -> dict[str, object]:
    return {
        "date": datetime.datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "openssl": str(openssl_backend.openssl_version_text()),
        "sqlite": sqlite3.sqlite_version,
        "numpy": np.__version__,
    }


HEADER = (
    f"{'record':<6} {'N':>8} {'insert/s':>9} {'insert p50/p99 ms':>17} {'open p50/p99 ms':>17}"
    f" {'bytes/rec':>10} {'1st rot s':>9} {'rotate s':>9} {'us/key':>7} {'erase s':>8} {'us/key':>7}"
)


def format_row(r: SizeResult) -> str:
    insert, opened = r.insert.latency, r.open.latency
    return (
        f"{r.kind:<6} {r.size:>8,} {r.insert.per_second:>9,.0f}"
        f" {f'{insert.p50_ms:.2f} / {insert.p99_ms:.2f}':>17}"
        f" {f'{opened.p50_ms:.3f} / {opened.p99_ms:.3f}':>17}"
        f" {r.vault.bytes_per_record:>10,.0f} {r.rotation.first_seconds:>9.3f}"
        f" {r.rotation.seconds:>9.3f} {r.rotation.per_key_us:>7.1f}"
        f" {r.erasure.seconds:>8.3f} {r.erasure.per_key_us:>7.1f}"
    )


def format_pins(p: PinChecks) -> str:
    kinds = {"ordinary": p.ordinary, "duress": p.duress, "wrong": p.wrong}
    figures = "; ".join(f"{k} p50 {v.p50_ms:.1f} / p99 {v.p99_ms:.1f} ms" for k, v in kinds.items())
    return (
        f"PIN check (HolderSecrets.check: two scrypt hashes), {p.per_kind} of each: {figures}\n"
        f"  duress - ordinary median {p.duress_minus_ordinary_p50_ms:+.2f} ms"
        f" ({100 * p.duress_minus_ordinary_p50_share:+.1f}%; ordinary IQR {p.ordinary_iqr_ms:.2f} ms);"
        f" making the two hashes at enrolment {p.create_ms:.0f} ms"
    )


def write_json(path: Path, report: dict[str, object]) -> None:
    """Atomically: a half-written results file never replaces a good one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(path)


@dataclass(frozen=True)
class Options:
    sizes: list[int]
    photo_sizes: list[int]
    opens: int
    pin_checks: int
    seed: int
    out: Path
    data_dir: Path | None


def run_benchmark(options: Options) -> dict[str, object]:
    started = time.perf_counter()
    machine = machine_info()
    log(f"PIN checks: {options.pin_checks} of each kind")
    pins = pin_checks(options.pin_checks)
    secrets = HolderSecrets.create(PIN, DURESS_PIN).to_bytes()
    payloads = {
        "text": make_payload("text", sample_record(None), secrets, options.seed),
        "photo": make_payload("photo", sample_record(document_photo(options.seed)), secrets, options.seed),
    }
    log("PIN attempt bookkeeping: reserve + reset on a vault of 100 records")
    attempt_writes = pin_attempt_writes(max(options.pin_checks * 5, 20), payloads["text"], options.data_dir)
    runs = [("text", size) for size in options.sizes] + [("photo", size) for size in options.photo_sizes]
    results = [
        measure(kind, size, payloads[kind], options, options.seed + n) for n, (kind, size) in enumerate(runs)
    ]
    report: dict[str, object] = {
        "benchmark": "records",
        "machine": machine,
        "settings": {
            "sizes": options.sizes,
            "photo_sizes": options.photo_sizes,
            "opens": options.opens,
            "pin_checks": options.pin_checks,
            "seed": options.seed,
            "templates_per_record": TEMPLATES_PER_RECORD,
            "dimension": DIMENSION,
            "photo_bytes": PHOTO_BYTES,
            "keyring": "FileKeyring",
            "vault": "RecordVault: SQLite WAL, synchronous=FULL, secure_delete=ON, a transaction a record",
            "scrypt_in_insert": False,
            "matcher": False,
        },
        "records": {kind: asdict(payload.shape) for kind, payload in payloads.items()},
        "pin_check": asdict(pins),
        # Beside the hashes, a server-side PIN check reserves the attempt and then resets it.
        "pin_attempt_writes": asdict(attempt_writes),
        "results": [asdict(r) for r in results],
        "total_seconds": time.perf_counter() - started,
        "load_average_at_end": os.getloadavg(),  # others' work on the machine shows here
    }
    write_json(options.out, report)
    for payload in payloads.values():
        s = payload.shape
        print(
            f"{s.kind} record: {s.record_bytes:,} bytes (sealed {s.sealed_record_bytes:,}),"
            f" secrets {s.secrets_bytes} B, templates {s.templates_bytes:,} B;"
            f" to_bytes {s.serialise_ms:.2f} ms, from_bytes {s.parse_ms:.2f} ms"
        )
    print(HEADER)
    for result in results:
        print(format_row(result))
    print(format_pins(pins))
    print(
        f"PIN attempt bookkeeping (reserve + reset, two SQLite writes): p50 {attempt_writes.p50_ms:.2f} ms,"
        f" p99 {attempt_writes.p99_ms:.2f} ms"
    )
    print(f"\ntotal {report['total_seconds']:.0f} s; results in {options.out}")
    return report


def sizes(text: str) -> list[int]:
    values = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    if any(value < 2 for value in values):
        raise argparse.ArgumentTypeError("sizes are integers of at least 2, e.g. 1000,10000")
    return values


def pick(given: T | None, normal: T, quick: T, is_quick: bool) -> T:
    """What was given, else the quick or the normal default."""
    if given is not None:
        return given
    return quick if is_quick else normal


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=sizes, help="vault sizes, text records (default 1000,10000,100000)")
    parser.add_argument(
        "--photo-sizes", type=sizes, help="vault sizes, photo records (default 1000,10000; '' for none)"
    )
    parser.add_argument("--opens", type=int, help="records opened per vault (default 1000)")
    parser.add_argument("--pin-checks", type=int, help="PIN checks of each kind (default 40)")
    parser.add_argument("--quick", action="store_true", help="a tiny run: sizes 50,200, photos 50")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON")
    parser.add_argument("--data-dir", type=Path, default=None, help="where the temporary vaults go")
    args = parser.parse_args(argv)
    quick: bool = args.quick
    opens = pick(args.opens, 1000, 20, quick)
    pins = pick(args.pin_checks, 40, 3, quick)
    if min(opens, pins) < 1:
        parser.error("--opens and --pin-checks must be positive")
    text_sizes = pick(args.sizes, DEFAULT_SIZES, QUICK_SIZES, quick)
    photo_sizes = pick(args.photo_sizes, DEFAULT_PHOTO_SIZES, QUICK_PHOTO_SIZES, quick)
    if not text_sizes and not photo_sizes:
        parser.error("give at least one size")
    return Options(text_sizes, photo_sizes, opens, pins, args.seed, args.out, args.data_dir)


def main(argv: Sequence[str] | None = None) -> int:
    run_benchmark(parse_options(argv))
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
