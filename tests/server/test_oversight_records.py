"""CCTV authorisations and fishing alerts read back from a real transparency log (oversight_records.py)."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safepassage.audit import LogEvent, TransparencyLog
from safepassage.server.oversight_records import read_oversight

T0 = 1_800_000_000_000  # ms
SEARCH = "/safepassage.v1.MatchingService/IdentifyStream"


def _use(at: int, grant: str, expires: str) -> LogEvent:
    details = {
        "authorisation": grant,
        "issued_by": "admin-1",
        "signer_serial": "1A2B",
        "cameras": "2",
        "legal_basis_sha256": "ab" * 32,
        "expires": expires,
    }
    return LogEvent(at, "cctv_edge:cam-1", "authorisation.use", "watchlist", "OK", details)


def test_authorisations_their_uses_and_fishing_alerts_are_read_back(tmp_path: Path) -> None:
    with TransparencyLog.open(tmp_path / "log.sqlite3", Ed25519PrivateKey.generate()) as log:
        log.append(_use(T0, "aaaa000011112222", "2020-01-01T00:00:00Z"))  # long expired
        log.append(_use(T0 + 1, "bbbb000011112222", "2999-01-01T00:00:00Z"))
        for i, (grant, outcome) in enumerate(
            [
                ("aaaa000011112222", "NO_MATCH"),
                ("bbbb000011112222", "MATCH"),
                ("bbbb000011112222", "NO_MATCH"),
            ]
        ):
            details = {"authorisation": grant, "faces": "1"}
            log.append(LogEvent(T0 + 10 + i, "cctv_edge:cam-1", SEARCH, "watchlist", outcome, details))
        # A restart logs the first use again: one authorisation still, first used at its first entry.
        log.append(_use(T0 + 20, "bbbb000011112222", "2999-01-01T00:00:00Z"))
        # An officer's search names no authorisation: no use of any.
        log.append(
            LogEvent(
                T0 + 21,
                "officer:officer-1",
                "/safepassage.v1.MatchingService/Identify",
                "watchlist",
                "MATCH",
                {},
            )
        )
        alert = {"rules": "volume.no_match_share", "searches": "301", "no_matches": "290", "galleries": "1"}
        log.append(LogEvent(T0 + 30, "officer:officer-1", "alert.fishing", "watchlist", "ALERT", alert))
        oversight = read_oversight(log, max_entries=1000)
        assert oversight.complete
        assert not read_oversight(log, max_entries=3).complete

    now = datetime.datetime.now(datetime.UTC)
    newer, older = oversight.authorisations
    assert (newer.authorisation_id, newer.active(now), newer.uses, newer.matches) == (
        "bbbb000011112222", True, 2, 1,
    )  # fmt: skip
    assert [use.outcome for use in newer.latest_uses] == ["NO_MATCH", "MATCH"]  # newest first
    assert newer.first_used == datetime.datetime.fromtimestamp((T0 + 1) / 1000, datetime.UTC)
    assert (older.authorisation_id, older.active(now), older.uses) == ("aaaa000011112222", False, 1)
    assert (older.cameras, older.issued_by, older.signer_serial) == (2, "admin-1", "1A2B")
    (fishing,) = oversight.alerts
    assert (fishing.actor, fishing.rules, fishing.searches, fishing.no_matches) == (
        "officer:officer-1", ("volume", "no_match_share"), 301, 290,
    )  # fmt: skip
