"""A witness: a second party that cosigns a log's tree heads only while the log only grows.

After C2SP tlog-witness: the log sends each new tree head with a consistency
proof from the newest head the witness cosigned; the witness checks the
head's signature under the log key it was given, checks the proof, records
the head and answers with its cosignature (:mod:`safepassage.audit.cosignature`).
A head smaller than the one it holds (a rollback), or of another tree (a
fork: a log rewritten and re-signed, even with the log's own key), is
refused for good: the witness never forgets what it saw.

The witness is a separate trust domain: its own Ed25519 key and its own
state folder, on another host or at least another account than the
server's, never inside the server's data or keys folder. Its state folder::

    witness.json            {"name": NAME}
    witness-ed25519.pem     the witness's signing key (mode 0600)
    witness-public.pem      its public key, for servers and auditors
    logs/<log key id>.pem   the public key of each log it witnesses
    logs/<log key id>.jsonl every tree head it cosigned that grew the log,
                            with the cosignature, oldest first; append-only

Each add holds an exclusive ``flock`` on the log's ``.jsonl`` while it reads
the newest line, checks and appends, so two witness processes on one folder
cannot both accept diverging heads. An append is fsynced before the
cosignature is returned; a last line cut by a crash was never answered and
is dropped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from safepassage.audit.cosignature import Cosignature
from safepassage.audit.errors import (
    ProofError,
    SignatureError,
    UnknownLog,
    WitnessConflict,
    WitnessRefused,
)
from safepassage.audit.keys import (
    generate_signing_key,
    key_id,
    load_public_key,
    load_signing_key,
    public_key_pem,
)
from safepassage.audit.merkle import EMPTY_ROOT, verify_consistency
from safepassage.audit.tree_head import SignedTreeHead, verify_tree_head
from safepassage.core import atomic_file
from safepassage.core.private_files import PUBLIC_FILE_MODE, make_private_folder
from safepassage.core.signing import SigningKey, VerifyingKey

__all__ = ["Witness", "Witnessed"]

_log = logging.getLogger(__name__)

CONFIG_FILE = "witness.json"
KEY_FILE = "witness-ed25519.pem"
PUBLIC_KEY_FILE = "witness-public.pem"
LOGS_FOLDER = "logs"
_KEY_ID = re.compile(r"[0-9a-f]{64}")
# C2SP note key names: no spaces, no "+"; kept to a safe set.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}")
_TAIL_BYTES = 8192  # a record line is well under 1 KiB


@dataclass(frozen=True)
class Witnessed:
    """The newest tree head a witness cosigned for one log, with its cosignature."""

    tree_head: SignedTreeHead
    cosignature: Cosignature

    def to_json(self) -> dict[str, object]:
        return {"tree_head": self.tree_head.to_json(), "cosignature": self.cosignature.to_json()}

    @classmethod
    def from_json(cls, obj: object) -> Witnessed:
        if not isinstance(obj, dict) or set(obj) != {"tree_head", "cosignature"}:
            raise ValueError("expected {'tree_head': ..., 'cosignature': ...}")
        return cls(SignedTreeHead.from_json(obj["tree_head"]), Cosignature.from_json(obj["cosignature"]))


class Witness:
    """One witness's key and state folder."""

    def __init__(self, folder: Path, name: str, key: SigningKey) -> None:
        """Use :meth:`create` or :meth:`open`."""
        self._folder = folder
        self._name = name
        self._key = key

    @classmethod
    def create(cls, folder: Path, name: str) -> Witness:
        """Make a new witness in ``folder`` (mode 0700); FileExistsError if one is there."""
        if not _NAME.fullmatch(name):
            raise ValueError("a witness name is 1-100 of A-Z a-z 0-9 . _ : / - (no spaces)")
        folder = Path(folder)
        make_private_folder(folder)
        key = generate_signing_key(folder / KEY_FILE)  # FileExistsError: never replace a witness's key
        make_private_folder(folder / LOGS_FOLDER)
        atomic_file.replace(folder / CONFIG_FILE, (json.dumps({"name": name}) + "\n").encode(), mode=None)
        atomic_file.replace(folder / PUBLIC_KEY_FILE, public_key_pem(key.public_key()), mode=PUBLIC_FILE_MODE)
        _log.info("made witness %s (key %s) in %s", name, key_id(key.public_key()), folder)
        return cls(folder, name, key)

    @classmethod
    def open(cls, folder: Path) -> Witness:
        """The witness in ``folder``; FileNotFoundError if there is none, ValueError if damaged."""
        folder = Path(folder)
        config = json.loads((folder / CONFIG_FILE).read_text())
        name = config.get("name") if isinstance(config, dict) else None
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"{folder / CONFIG_FILE} names no witness")
        return cls(folder, name, load_signing_key(folder / KEY_FILE))

    @property
    def name(self) -> str:
        return self._name

    @property
    def folder(self) -> Path:
        return self._folder

    @property
    def public_key(self) -> VerifyingKey:
        return self._key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    # -- the logs it witnesses ----------------------------------------------

    def add_log(self, public_key: VerifyingKey) -> str:
        """Witness the log signed by ``public_key`` from now on; returns its key id. Idempotent."""
        log_id = key_id(public_key)
        path = make_private_folder(self._folder / LOGS_FOLDER) / f"{log_id}.pem"
        # Linked into place whole: a crash never leaves half a key that the witness would keep refusing.
        if atomic_file.create(path, public_key_pem(public_key), mode=PUBLIC_FILE_MODE):
            _log.info("witness %s now witnesses log %s", self._name, log_id)
        return log_id

    def logs(self) -> list[str]:
        """Key ids of the logs this witness witnesses."""
        return sorted(path.stem for path in (self._folder / LOGS_FOLDER).glob("*.pem"))

    def _log_key(self, log_key_id: str) -> VerifyingKey:
        # The id comes off the network: only 64 hex digits ever name a file.
        path = self._folder / LOGS_FOLDER / f"{log_key_id}.pem"
        if not _KEY_ID.fullmatch(log_key_id) or not path.is_file():
            raise UnknownLog(f"witness {self._name} does not witness log {log_key_id[:64]}")
        return load_public_key(path.read_bytes())

    # -- what it saw ----------------------------------------------------------

    def latest(self, log_key_id: str) -> Witnessed | None:
        """The newest head cosigned for the log, or None before the first."""
        self._log_key(log_key_id)
        with self._locked(log_key_id) as file:
            return self._tail(file, log_key_id)

    def add(
        self, log_key_id: str, old_size: int, proof: Sequence[bytes], head: SignedTreeHead
    ) -> Cosignature:
        """Cosign ``head`` if ``proof`` shows it extends the newest head cosigned (of size ``old_size``).

        Raises UnknownLog for a log it was not given, WitnessConflict (with
        the size it holds) if ``old_size`` is not that size, and
        WitnessRefused for a head not signed by the log, smaller than the
        one it holds, or not consistent with it.
        """
        log_key = self._log_key(log_key_id)
        try:
            verify_tree_head(head, log_key)
        except SignatureError as error:
            raise WitnessRefused(f"the tree head is not signed by log {log_key_id}: {error}") from None
        with self._locked(log_key_id) as file:
            seen = self._tail(file, log_key_id)
            size, root = (seen.tree_head.tree_size, seen.tree_head.root_hash) if seen else (0, EMPTY_ROOT)
            if old_size != size:
                raise WitnessConflict(
                    f"witness {self._name} holds size {size} of log {log_key_id}, not {old_size}",
                    tree_size=size,
                )
            if head.tree_size < size:
                raise WitnessRefused(
                    f"tree head of size {head.tree_size} is smaller than size {size} that witness"
                    f" {self._name} cosigned: the log was rolled back"
                )
            try:
                verify_consistency(size, head.tree_size, proof, root, head.root_hash)
            except ProofError as error:
                raise WitnessRefused(
                    f"tree head of size {head.tree_size} is not consistent with size {size} that witness"
                    f" {self._name} cosigned (a forked or rewritten log): {error}"
                ) from None
            cosignature = Cosignature.sign(self._key, self._name, log_key_id, head)
            if seen is None or head.tree_size > size:
                line = json.dumps(Witnessed(head, cosignature).to_json(), sort_keys=True) + "\n"
                file.write(line.encode("utf-8"))
                file.flush()
                os.fsync(file.fileno())
        _log.info("witness %s cosigned log %s at size %d", self._name, log_key_id, head.tree_size)
        return cosignature

    @contextmanager
    def _locked(self, log_key_id: str) -> Iterator[IO[bytes]]:
        """The log's record file, opened for appending under an exclusive lock."""
        path = self._folder / LOGS_FOLDER / f"{log_key_id}.jsonl"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
        with os.fdopen(fd, "r+b") as file:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX)
            try:
                yield file
            finally:
                fcntl.flock(file.fileno(), fcntl.LOCK_UN)

    def _tail(self, file: IO[bytes], log_key_id: str) -> Witnessed | None:
        """The last complete line of the record file; a torn last line is cut off. Hold the lock."""
        end = file.seek(0, os.SEEK_END)
        start = max(0, end - _TAIL_BYTES)
        file.seek(start)
        data = file.read()
        complete = data.rfind(b"\n") + 1
        if start + complete < end:
            # Written but never fsynced and answered (the witness stopped mid-append).
            _log.warning("witness %s drops a torn last line of log %s", self._name, log_key_id)
            file.truncate(start + complete)
        lines = data[:complete].splitlines()
        if not lines:
            if start:
                raise ValueError(f"the record of log {log_key_id} ends in {_TAIL_BYTES} bytes without a line")
            return None
        return Witnessed.from_json(json.loads(lines[-1]))
