"""A versioned keyring kept in one JSON file: its state, format, validation and atomic writes.

Two packages keep secret keys by version this way and may not import each other:
``safepassage.enrolment.kek`` (the KEK wrapping each record's data key) and ``safepassage.matcher.protection``
(template-protection keys). Each describes its file with a :class:`KeyringFormat` (the
``format`` string stored in the file, the key size, how messages name it, the error to raise)
and keeps here only what it does with the keys. The document, with keys in base64::

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from safepassage.core.errors import SafePassageError
from safepassage.core.private_files import check_owner_only, make_private_folder

__all__ = [
    "FORMAT_VERSION",
    "MAX_FILE_SIZE",
    "MAX_VERSION",
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
    """One kind of keyring file, and the words its messages use (each kept as it always read).

    ``keyring`` names the file ("KEK keyring"); ``version`` names a version in the messages about
    version numbers ("KEK version"); ``entry`` names one in the message about a malformed key.
    Warnings go to ``log``, the owning module's logger, so logging configuration keyed by
    module still applies.
    """

    name: str
    key_size: int
    keyring: str
    version: str
    entry: str
    error: type[SafePassageError]
    log: logging.Logger = field(repr=False)


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
            raise error(f"{where}: {fmt.entry} {version} does not hold one {fmt.key_size}-byte base64 key")
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
    try:
        with open(path, "rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            data = handle.read(MAX_FILE_SIZE + 1)
    except FileNotFoundError:
        raise fmt.error(f"{where} does not exist") from None
    except OSError as exc:
        raise fmt.error(f"cannot read {where}: {exc.strerror}") from None
    if len(data) > MAX_FILE_SIZE:
        raise fmt.error(f"{where} is too large to be a keyring")
    # Refused, not warned about: whoever can read the keyring can read everything under its keys.
    check_owner_only(path, mode, fmt.keyring, fmt.error)
    return parse(data, where, fmt)


def write(path: Path, state: KeyringState, fmt: KeyringFormat, *, replace: bool) -> bool:
    """Write the keyring atomically: a 0600 temporary file beside it, fsync, rename, fsync the folder.

    Readers and crashes see the old file or the new one. Creating (``replace``
    false) links instead of renaming, so it never overwrites a keyring another
    process made first (which would lose everything written under its keys) and
    returns False in that case.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        if not replace:
            make_private_folder(path.parent)
        try:
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                os.fchmod(out.fileno(), 0o600)  # the umask may have taken bits; never leave more
                out.write(serialise(state, fmt))
                out.flush()
                os.fsync(out.fileno())
            if replace:
                os.replace(tmp, path)
            else:
                os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        folder = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as exc:
        raise fmt.error(f"cannot write {fmt.keyring} {str(path)!r}: {exc.strerror}") from None
    return True
