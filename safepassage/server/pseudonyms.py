"""Keyed pseudonyms for what clients choose and the transparency log must count but not hold.

The log is public to auditors and append-only forever, so text a client
chose (an identify-stream ``request_id``, the id of a gallery that does not
exist) never enters it as written: a client can put a name or a case number
in it. It enters as an HMAC-SHA256 under a key derived from the server's
master key, so an auditor can still count the entries of one id (how often a
query was replayed, which refusals named the same gallery) without the text,
and nobody without the key can test guesses against it. Kept CCTV probe ids
enter the same way: they are the handle an officer confirms a hit by, so the
log links a hit to its confirmation without publishing the handle. An officer's recorded decision
names its candidate (a reference id) and carries a free-text note: both enter the same way, as
does the travel document a chip verification was about (its issuing state and number).

The operator, who holds the key (`from_key_file`), can recompute the
pseudonym of a given id to find its entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from safepassage.audit import pseudonym
from safepassage.server.keys import derive_key, load_or_create_key

# The derive_key purpose: a key of its own, independent of the master key's other uses.
PURPOSE = "transparency-log-pseudonyms"


@dataclass(frozen=True)
class LogPseudonyms:
    key: bytes = field(repr=False)

    @classmethod
    def from_master_key(cls, master_key: bytes) -> LogPseudonyms:
        return cls(derive_key(master_key, PURPOSE))

    @classmethod
    def from_key_file(cls, template_key_path: Path) -> LogPseudonyms:
        """The server's pseudonyms, from its master (template) key file."""
        return cls.from_master_key(load_or_create_key(template_key_path, create=False))

    def request_id(self, request_id: str) -> str:
        return pseudonym(self.key, f"request-id:{request_id}")

    def probe(self, probe_id: int) -> str:
        return pseudonym(self.key, f"probe:{probe_id}")

    def gallery(self, gallery_id: str) -> str:
        return pseudonym(self.key, f"gallery:{gallery_id}")

    def reference(self, reference_id: str) -> str:
        """A candidate an officer decided on: a record's id, so never in the log as written."""
        return pseudonym(self.key, f"reference:{reference_id}")

    def note(self, note: str) -> str:
        """An officer's free-text note: the key holder can check a note against the log, nobody else."""
        return pseudonym(self.key, f"note:{note}")

    def legal_basis(self, legal_basis: str) -> str:
        """A CCTV authorisation's legal basis, typed by an administrator: free text, so keyed."""
        return pseudonym(self.key, f"legal-basis:{legal_basis.strip()}")

    def document(self, issuing_state: str, document_number: str) -> str:
        """A travel document (its MRZ's issuing state and number): personal data, never in the log."""
        return pseudonym(self.key, f"document:{issuing_state}:{document_number}")
