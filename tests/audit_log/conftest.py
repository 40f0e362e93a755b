"""Shared fixtures: a signing key, an open log, and well-formed events."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safepassage.audit import LogEvent, TransparencyLog, sha256_hex

BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

OPERATIONS = (
    "MatchingService/Identify",
    "MatchingService/Verify",
    "MatchingService/InsertTemplate",
    "MatchingService/DeleteTemplate",
    "certificate.revoke",
    "authorisation.create",
    "disclosure.create",
)


def make_event(i: int, actor: str = "officer:officer-0042") -> LogEvent:
    """The i-th of a plausible stream of events: hashes and counts only."""
    return LogEvent(
        timestamp=BASE_MS + i,
        actor=actor,
        operation=OPERATIONS[i % len(OPERATIONS)],
        gallery_id="watchlist-eu" if i % 3 else "",
        outcome="OK" if i % 5 else "NOT_FOUND",
        details={"faces": str(i % 4), "probe_sha256": sha256_hex(i.to_bytes(8, "big"))},
    )


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "log.db"


@pytest.fixture
def log(log_path: Path, key: Ed25519PrivateKey) -> Iterator[TransparencyLog]:
    with TransparencyLog.open(log_path, key) as opened:
        yield opened
