"""A versioned keyring kept in one JSON file: its state, format, validation, atomic writes and accessors.

Two packages keep secret keys by version this way and may not import each other:
``safepassage.enrolment.kek`` (the KEK wrapping each record's data key) and ``safepassage.matcher.protection``
(template-protection keys). Each describes its file with a :class:`KeyringFormat` (the
``format`` string stored in the file, the key size, how messages name it, the error to raise),
holds a :class:`Keyring` (the versions, rotation and destruction, thread-safe) and keeps only
what it does with the keys. The document, with keys in base64::

    {"format": "<KeyringFormat.name>", "format_version": 1, "current_version": 3,
     "keys": {"2": "<base64 key>", "3": "..."}, "destroyed": [1]}

Destroyed version numbers stay listed so that none is ever reused and a reference to one is
reported as destroyed rather than unknown. Messages and logs name the file and versions, never
the content: the file holds the keys.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from safepassage.core import atomic_file
from safepassage.core.errors import SafePassageError
from safepassage.core.private_files import read_private

__all__ = [
    "FORMAT_VERSION",
    "MAX_FILE_SIZE",
    "MAX_VERSION",
    "Keyring",
    "KeyringFormat",
    "KeyringState",
    "load",
    "next_version",
    "parse",
    "serialise",
    "write",
]

FORMAT_VERSION = 1
MAX_FILE_SIZE = 4 * 1024 * 1024  # about 60 000 versions; anything larger is not a keyring
MAX_VERSION = 2**32 - 1  # versions travel as u32 (in the KEK's wrapped-key header)


@dataclass(frozen=True)
class KeyringFormat:
    """One kind of keyring file, and the words its messages use.

    ``name`` is the ``format`` string in the file; ``keyring`` names the file in messages ("KEK
    keyring"), ``version`` one of its versions ("KEK version"); ``error`` is what they raise.
    Logs go to the logger of the module that subclasses :class:`Keyring`, so logging
    configuration keyed by module still applies.
    """

    name: str
    key_size: int
    keyring: str
    version: str
    error: type[SafePassageError]


@dataclass(frozen=True)
class KeyringState:
    """One consistent view of a keyring; replaced whole, never mutated."""

    current: int
    keys: Mapping[int, bytes] = field(repr=False)
    destroyed: tuple[int, ...]

    def with_key(self, version: int, key: bytes) -> KeyringState:
        """This state with ``key`` added as ``version``, the new current version."""
        return KeyringState(current=version, keys={**self.keys, version: key}, destroyed=self.destroyed)

    def without(self, version: int) -> KeyringState:
        """This state with ``version``'s key forgotten and its number kept as destroyed."""
        keys = {v: k for v, k in self.keys.items() if v != version}
        destroyed = tuple(sorted((*self.destroyed, version)))
        return KeyringState(current=self.current, keys=keys, destroyed=destroyed)


def next_version(state: KeyringState, fmt: KeyringFormat) -> int:
    """The number a rotation takes: above every live and destroyed one, so none is reused."""
    version = max((*state.keys, *state.destroyed)) + 1
    if version > MAX_VERSION:
        raise fmt.error(f"the keyring has used every {fmt.version} number")
    return version


def serialise(state: KeyringState, fmt: KeyringFormat) -> bytes:
    """The file's bytes; stable (sorted versions, fixed indent), so a rewrite changes only what changed."""
    document = {
        "format": fmt.name,
        "format_version": FORMAT_VERSION,
        "current_version": state.current,
        "keys": {str(v): base64.b64encode(k).decode("ascii") for v, k in sorted(state.keys.items())},
        "destroyed": list(state.destroyed),
    }
    return (json.dumps(document, indent=2) + "\n").encode("ascii")


def _version(value: object, where: str, fmt: KeyringFormat) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VERSION:
        raise fmt.error(f"{where}: a {fmt.version} is not an integer in 1..2**32-1")
    return value


def parse(data: bytes, where: str, fmt: KeyringFormat) -> KeyringState:
    """Validate a keyring document; messages never quote the content (it holds keys)."""
    error = fmt.error
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise error(f"{where} is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt.name:
        raise error(f"{where} is not a SafePassage {fmt.keyring}")
    if doc.get("format_version") != FORMAT_VERSION:
        raise error(f"{where} has an unsupported format version")
    raw_keys, raw_destroyed = doc.get("keys"), doc.get("destroyed")
    if not isinstance(raw_keys, dict) or not isinstance(raw_destroyed, list):
        raise error(f"{where}: 'keys' must be an object and 'destroyed' a list")
    keys: dict[int, bytes] = {}
    for name, text in raw_keys.items():
        version = _version(name, where, fmt)
        key = b""
        with contextlib.suppress(binascii.Error, ValueError):
            key = base64.b64decode(text, validate=True) if isinstance(text, str) else b""
        if len(key) != fmt.key_size or version in keys:
            raise error(f"{where}: {fmt.version} {version} does not hold one {fmt.key_size}-byte base64 key")
        keys[version] = key
    destroyed = tuple(sorted({_version(v, where, fmt) for v in raw_destroyed}))
    current = _version(doc.get("current_version"), where, fmt)
    if set(destroyed) & set(keys):
        raise error(f"{where}: a version is both live and destroyed")
    if current not in keys or current != max((*keys, *destroyed)):
        raise error(f"{where}: the current version must be the newest live version")
    return KeyringState(current=current, keys=keys, destroyed=destroyed)


def load(path: Path, fmt: KeyringFormat) -> KeyringState:
    """Read and validate the keyring at ``path``; ``fmt.error`` if missing, unreadable, malformed or
    accessible to group or others."""
    where = f"{fmt.keyring} {str(path)!r}"
    if not os.path.lexists(path):
        raise fmt.error(f"{where} does not exist")
    # Refused, not warned about: whoever can read the keyring can read everything under its keys.
    return parse(read_private(path, fmt.keyring, limit=MAX_FILE_SIZE, error=fmt.error), where, fmt)


def write(path: Path, state: KeyringState, fmt: KeyringFormat, *, replace: bool) -> bool:
    """Write the keyring atomically (0600; see :mod:`safepassage.core.atomic_file`).

    Readers and crashes see the old file or the new one. Creating (``replace``
    false) never overwrites a keyring another process made first (which would
    lose everything written under its keys) and returns False in that case.
    """
    try:
        if replace:
            atomic_file.replace(path, serialise(state, fmt))
            return True
        return atomic_file.create(path, serialise(state, fmt))
    except OSError as exc:
        raise fmt.error(f"cannot write {fmt.keyring} {str(path)!r}: {exc.strerror}") from None


class Keyring:
    """A keyring file and its current state; every change is written before memory changes.

    So a failed write leaves both as they were. Thread-safe: a lock serialises changes and reads
    take one consistent state. One process owns the file: the lock does not reach another process.
    Each keyring subclasses it with what it does with its keys, and names its own ``open``.
    """

    __slots__ = ("_format", "_lock", "_path", "_state")

    def __init__(self, path: Path, fmt: KeyringFormat, state: KeyringState) -> None:
        self._path = path
        self._format = fmt
        self._lock = threading.Lock()
        self._state = state

    @classmethod
    def load_file(cls, path: Path, fmt: KeyringFormat) -> Self:
        """The keyring at ``path``; ``fmt.error`` if it is missing, unreadable or malformed."""
        path = Path(path)
        return cls(path, fmt, load(path, fmt))

    @classmethod
    def create_file(cls, path: Path, fmt: KeyringFormat) -> Self:
        """The keyring at ``path``, made with a random version 1 if there is none (never overwriting one)."""
        path = Path(path)
        if not path.exists():
            state = KeyringState(current=1, keys={1: secrets.token_bytes(fmt.key_size)}, destroyed=())
            if write(path, state, fmt, replace=False):
                logging.getLogger(cls.__module__).info(
                    "created a new %s at %s (version 1)", fmt.keyring, path
                )
        return cls.load_file(path, fmt)

    @property
    def path(self) -> Path:
        """The keyring file."""
        return self._path

    def __repr__(self) -> str:
        state = self._state  # one reference read: a consistent snapshot
        path, name = str(self._path), type(self).__name__
        return f"{name}(path={path!r}, current={state.current}, live={len(state.keys)})"

    def current(self) -> int:
        """The version new keys are used under."""
        with self._lock:
            return self._state.current

    def versions(self) -> tuple[int, ...]:
        """Live (not destroyed) versions, ascending."""
        with self._lock:
            return tuple(sorted(self._state.keys))

    def destroyed_versions(self) -> tuple[int, ...]:
        """Versions destroyed so far, ascending (kept so that none is ever reused)."""
        with self._lock:
            return self._state.destroyed

    def current_key(self) -> tuple[int, bytes]:
        """The current version and its key, read together."""
        with self._lock:
            state = self._state
        return state.current, state.keys[state.current]

    def lookup(self, version: int) -> tuple[bytes | None, bool]:
        """``version``'s key (None if it has none) and whether it was destroyed, read together."""
        with self._lock:
            return self._state.keys.get(version), version in self._state.destroyed

    def add_version(self) -> int:
        """A new random key as the current version; older versions stay until destroyed."""
        fmt = self._format
        with self._lock:
            version = next_version(self._state, fmt)
            new = self._state.with_key(version, secrets.token_bytes(fmt.key_size))
            write(self._path, new, fmt, replace=True)
            self._state = new
        return version

    def destroy_version(self, version: int) -> bool:
        """Forget ``version`` for good; False if it was gone already, ``fmt.error`` if current or unknown."""
        fmt = self._format
        with self._lock:
            state = self._state
            if version == state.current:
                raise fmt.error(f"refusing to destroy {fmt.version} {version}: it is the current version")
            if version in state.destroyed:
                return False  # destroying is idempotent
            if version not in state.keys:
                raise fmt.error(f"{fmt.version} {version} is unknown to this keyring")
            new = state.without(version)
            write(self._path, new, fmt, replace=True)
            self._state = new
        return True
