"""The record vault: one SQLite file of sealed records, consents, tombstones and referrals.

Nothing personal is stored in clear (safepassage.enrolment.vault_records says what is). Erasure
deletes a record's sealed parts and wrapped key in one transaction, leaves a tombstone, and
truncates the write-ahead log so the old pages leave it too (``secure_delete`` zeroes them in the
main file).

:class:`RecordVault` is the one object the service holds: the open file
(:class:`~safepassage.enrolment.vault_file.VaultFile`, its connection and lock) and one attribute
per aggregate, each a module of its own sharing that file, so every write is one transaction under
the same lock:

    records      record rows                 safepassage.enrolment.vault_records.RecordRows
    data_keys    their wrapped data keys     safepassage.enrolment.vault_records.DataKeys
    consents     consent decisions           safepassage.enrolment.vault_consents.ConsentRows
    pins         PIN attempts and lockouts   safepassage.enrolment.pin_attempts.PinAttempts
    credentials  holder credentials issued   safepassage.enrolment.credential_registry.CredentialRegistry
    referrals    referral rows               safepassage.enrolment.vault_referrals.ReferralRows
    erasures     erasure journal, tombstones safepassage.enrolment.vault_erasures.Erasures

The schema and its migration are in safepassage.enrolment.vault_schema.
"""

from __future__ import annotations

from pathlib import Path

from safepassage.enrolment.credential_registry import CredentialRegistry
from safepassage.enrolment.pin_attempts import PinAttempts
from safepassage.enrolment.vault_consents import ConsentRows
from safepassage.enrolment.vault_erasures import Erasures
from safepassage.enrolment.vault_file import VaultFile
from safepassage.enrolment.vault_records import DataKeys, RecordRows
from safepassage.enrolment.vault_referrals import ReferralRows

__all__ = ["RecordVault"]


class RecordVault:
    """The vault file and its aggregates; see the module's docstring for which is which."""

    def __init__(self, file: VaultFile) -> None:
        """Use :meth:`open`."""
        self._file = file
        self.path = file.path
        self.records = RecordRows(file)
        self.data_keys = DataKeys(file)
        self.consents = ConsentRows(file)
        self.pins = PinAttempts(file)
        self.credentials = CredentialRegistry(file)
        self.referrals = ReferralRows(file)
        self.erasures = Erasures(file)

    @classmethod
    def open(cls, path: Path) -> RecordVault:
        """Open or create the vault; a schema-1 file is migrated in place (KeyringError if newer)."""
        return cls(VaultFile.open(path))

    def close(self) -> None:
        self._file.close()

    def purge_journal(self) -> None:
        """Copy the WAL into the main file (zeroing freed pages) and truncate it to nothing."""
        self._file.purge_journal()

    def backup(self, destination: Path) -> None:
        """A consistent copy of the vault (SQLite's online backup), made while the service runs."""
        self._file.backup(destination)
