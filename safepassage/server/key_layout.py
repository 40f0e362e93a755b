"""Where key files live: apart from the data folder, so a copy of that folder does not carry them.

A backup is usually a plain copy of the data folder. Had the keys been inside it (the old
``<data_dir>/keys`` layout), the backup would hold the keys that decrypt it, and an erasure,
which destroys old key-encryption key (KEK) versions only in the live keyring, could not reach
the copy of the keyring in the backup: the erased person could be read back from it. So every
key file defaults into ``storage.keys_dir`` (the sibling ``<data_dir>-keys``), the server
refuses to start with the KEK keyring inside the data folder unless the operator says backups
leave it out (``enrolment.allow_keyring_in_data_dir``), and it never moves keys by itself: a
deployment still on the old layout is told the command that moves them.
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path

from safepassage.core.errors import FailedPrecondition
from safepassage.core.private_files import make_private_folder
from safepassage.server.config import Config

log = logging.getLogger(__name__)

# The folder the keys lived in before storage.keys_dir (inside the data folder).
LEGACY_FOLDER = "keys"


class KeyLayoutError(FailedPrecondition):
    """Key files sit where a copy of the data folder, or a backup, would carry them."""


def key_files(config: Config) -> list[tuple[str, Path]]:
    """Every key file this configuration makes or reads, with what it is."""
    return [
        ("template key", config.template_key_path),
        ("key-encryption keyring", config.keyring_path),
        ("template-transform keyring", config.transform_keyring_path),
        ("station key", config.station_key_path),
        ("credential issuer key", config.issuer_key_path),
        ("credential reader key", config.reader_key_path),
        ("transparency-log key", config.audit_key_path),
    ]


def keys_inside(folder: Path, config: Config) -> list[Path]:
    """The key files of this configuration that lie inside `folder` (symbolic links followed)."""
    real = _real(folder)
    return [path for _, path in key_files(config) if _real(path).is_relative_to(real)]


def check_key_layout(config: Config) -> None:
    """Refuse a layout that puts the keyring where backups carry it, then make keys_dir (0700).

    Called first at start-up, before any key file is read or made: making ``keys_dir`` here,
    owner-only, means no key is ever created in a folder other users can list, whichever
    module writes it first.
    """
    data_dir = config.storage.data_dir
    keyring = config.keyring_path
    if keyring in keys_inside(data_dir, config) and not config.enrolment.allow_keyring_in_data_dir:
        raise KeyLayoutError(
            f"the key-encryption keyring {keyring} is inside the data folder {data_dir}: a copy of"
            " that folder (a backup) would carry the key that decrypts every protected record, and"
            " an erasure, which destroys old key versions only in the live keyring, could not reach"
            f" that copy. Keep it outside (storage.keys_dir, default {config.keys_dir}, or"
            " enrolment.keyring_file), or set enrolment.allow_keyring_in_data_dir = true if backups"
            " of the data folder leave the keyring out"
        )
    head = config.audit_head_path
    if _real(head).is_relative_to(_real(data_dir)):
        raise KeyLayoutError(
            f"the transparency log's head file {head} is inside the data folder {data_dir}: whoever"
            " can cut the log back can cut its last published head back with it, and the start-up"
            " check would pass. Keep it outside (audit.head_file, default in storage.keys_dir)"
        )
    _refuse_legacy_layout(config)
    for what, path in key_files(config):
        if path != keyring and path in keys_inside(data_dir, config):
            log.warning("the %s %s is inside the data folder: backups of it carry the key", what, path)
    _make_keys_dir(config)


def check_backup_destination(destination: Path, config: Config) -> None:
    """Refuse to write a backup among the keys that decrypt it."""
    real = _real(destination)
    keyring = config.keyring_path
    for folder in (config.keys_dir, keyring.parent):
        if real.is_relative_to(_real(folder)):
            raise KeyLayoutError(
                f"refusing to write the backup {destination} inside {folder}, which holds the"
                f" key-encryption keyring {keyring}: a backup kept with its keys can still be"
                " decrypted after an erasure; write it elsewhere"
            )


def backup_warning(destination: Path, config: Config) -> str:
    """One line for the operator who has just made a backup: which keys must not go with it."""
    line = (
        f"warning: do not store {destination} with the key-encryption keyring {config.keyring_path}"
        f" (nor anything else in {config.keys_dir}): erasure destroys old key versions only in the"
        " live keyring, so a backup kept with a copy of it lets erased records be read again"
    )
    beside = keys_inside(destination.parent, config)
    if beside:
        files = ", ".join(str(path) for path in beside)
        line += f"; {destination.parent} also holds key files ({files}): copy the backup file alone"
    return line


def _refuse_legacy_layout(config: Config) -> None:
    """Key files left in <data_dir>/keys by the old layout: say how to move them, never move them."""
    legacy, keys_dir = config.storage.data_dir / LEGACY_FOLDER, config.keys_dir
    if not legacy.is_dir() or _real(legacy) == _real(keys_dir):
        return
    defaulted = [path for _, path in key_files(config) if _real(path.parent) == _real(keys_dir)]
    old = sorted(path.name for path in defaulted if (legacy / path.name).exists())
    if not old:
        return
    names = ", ".join(old)
    if not any(path.exists() for path in defaulted):
        if keys_dir.exists():
            command = f"mv {shlex.quote(str(legacy))}/* {shlex.quote(str(keys_dir))}/"
            command += f" && rmdir {shlex.quote(str(legacy))}"
        else:
            command = f"mv {shlex.quote(str(legacy))} {shlex.quote(str(keys_dir))}"
        raise KeyLayoutError(
            f"key files of an older layout are inside the data folder, in {legacy} ({names}); keys now"
            f" live in {keys_dir} (storage.keys_dir), outside it, so that a backup of the data folder"
            f" does not carry them. The server does not move keys itself: stop it and run `{command}`"
        )
    raise KeyLayoutError(
        f"{legacy} still holds key files ({names}) while the keys in use are in {keys_dir}: a backup"
        " of the data folder would carry them. Move them out of the data folder, or destroy them"
        f" once you are sure {keys_dir} holds the keys in use"
    )


def _make_keys_dir(config: Config) -> None:
    folder = config.keys_dir
    if not any(_real(path).is_relative_to(_real(folder)) for _, path in key_files(config)):
        return
    try:
        make_private_folder(folder.parent)  # missing parents 0700 too, not the umask's mode
        folder.mkdir(mode=0o700)
    except FileExistsError:
        mode = folder.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning("the key folder %s is open to group or others (mode %o): chmod 700 it", folder, mode)
        return
    except OSError as error:
        raise KeyLayoutError(f"cannot make the key folder {folder}: {error.strerror}") from None
    os.chmod(folder, 0o700)  # the umask may have taken bits; never more than the owner's
    log.info("made the key folder %s (mode 700)", folder)


def _real(path: Path) -> Path:
    """The absolute path with every symbolic link of its existing part resolved."""
    return path.expanduser().resolve()
