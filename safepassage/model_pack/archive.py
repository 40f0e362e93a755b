"""The model pack as one file: exported where the pack is built, installed on an edge box.

    safepassage models export --out models.tar [--models var/models]       # where the pack is built
    safepassage edge models install models.tar --config camera.toml       # on the camera unit or kiosk

The archive is a plain tar holding ``manifest.json`` and exactly the files its
entries name, each with the sha256 the manifest records. Export checks every
file against the manifest before writing anything, and writes the archive
whole or not at all (safepassage.core.atomic_file: a temporary file, fsynced, renamed into place).

Install trusts nothing in the archive: members must be regular files with
plain relative names (no links, devices, absolute paths or ``..``), every
manifest entry must be present, nothing else may be, and every file's sha256
must match its entry. All of this is checked in a staging folder beside the
model folder; only then is the staging folder renamed into place (the previous
pack is moved aside first and removed after), so a refused or interrupted
install leaves the configured folder as it was.

This module needs only the standard library and `safepassage.face.manifest`, so an
edge-only install (`uv sync --extra edge`: no onnx, no dlib) can run it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import IO

from safepassage.core import atomic_file
from safepassage.core.private_files import PUBLIC_FILE_MODE
from safepassage.face.manifest import MANIFEST_NAME, ModelPack
from safepassage.model_pack.errors import ModelArchiveError

__all__ = ["MAX_MEMBER_BYTES", "export_pack", "install_pack"]

log = logging.getLogger(__name__)

# Far above any model in the pack (the largest is ~90 MB); an archive claiming more is not a pack.
MAX_MEMBER_BYTES = 2 * 1024**3
_MAX_MANIFEST_BYTES = 1024**2


def _plain_name(name: str, what: str) -> PurePosixPath:
    """``name`` as a relative path inside the pack, or ModelArchiveError."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or any(part in ("", ".", "..") for part in name.split("/")):
        raise ModelArchiveError(f"{what} {name!r} is not a plain relative path inside the model pack")
    return path


def export_pack(models: Path, out: Path) -> ModelPack:
    """Write the verified pack in ``models`` as the archive ``out``; returns the pack exported."""
    pack = ModelPack.load(models)
    for key, entry in sorted(pack.models.items()):
        _plain_name(entry.file, f"manifest entry {key!r} file")
        pack.path_of(key)  # present, and its sha256 as the manifest says
    # The pack is not secret: 0644, published whole or not at all.
    with (
        atomic_file.replacing(out, mode=PUBLIC_FILE_MODE) as stream,
        tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        _add(tar, models / MANIFEST_NAME, MANIFEST_NAME)
        for entry in sorted(pack.models.values(), key=lambda e: e.file):
            _add(tar, models / entry.file, entry.file)
    log.info("model pack %s exported to %s (%d models)", models, out, len(pack.models))
    return pack


def _add(tar: tarfile.TarFile, path: Path, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mode = 0o644
    info.mtime = int(path.stat().st_mtime)
    with path.open("rb") as stream:
        tar.addfile(info, stream)


def install_pack(archive: Path, model_dir: Path) -> ModelPack:
    """Verify the archive and install its pack as ``model_dir``; returns the installed pack.

    Raises ModelArchiveError for a malformed archive, ManifestError for a bad
    manifest, ModelHashMismatch for a file whose sha256 differs from its entry;
    in every case ``model_dir`` is left untouched.
    """
    target = model_dir.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.install-", dir=target.parent))
    try:
        try:
            with _open(archive) as tar:
                pack = _unpack(tar, archive, staging)
        except tarfile.TarError as error:
            raise ModelArchiveError(f"the model pack archive {archive} is damaged: {error}") from None
        for key in sorted(pack.models):
            pack.path_of(key)  # every file's sha256 against the manifest, before anything is installed
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700; the pack is not secret
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("model pack from %s installed in %s (%d models)", archive, target, len(pack.models))
    return ModelPack.load(target)


def _open(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, mode="r:*")
    except (OSError, tarfile.TarError) as error:
        raise ModelArchiveError(f"cannot read the model pack archive {archive}: {error}") from None


def _unpack(tar: tarfile.TarFile, archive: Path, staging: Path) -> ModelPack:
    """Copy the archive's members into ``staging`` after checking them; the staged pack."""
    members: dict[str, tarfile.TarInfo] = {}
    for member in tar.getmembers():
        _plain_name(member.name, f"archive {archive} member")
        if not member.isfile():
            raise ModelArchiveError(f"archive {archive} member {member.name!r} is not a regular file")
        if member.name in members:
            raise ModelArchiveError(f"archive {archive} holds {member.name!r} twice")
        if member.size > MAX_MEMBER_BYTES:
            raise ModelArchiveError(
                f"archive {archive} member {member.name!r} is too large ({member.size} bytes)"
            )
        members[member.name] = member
    manifest = members.get(MANIFEST_NAME)
    if manifest is None:
        raise ModelArchiveError(f"archive {archive} holds no {MANIFEST_NAME}: it is not a model pack archive")
    if manifest.size > _MAX_MANIFEST_BYTES:
        raise ModelArchiveError(f"archive {archive}: {MANIFEST_NAME} is too large ({manifest.size} bytes)")
    _extract(tar, manifest, staging / MANIFEST_NAME)
    pack = ModelPack.load(staging)
    files: dict[str, str] = {}
    for key, entry in pack.models.items():
        _plain_name(entry.file, f"manifest entry {key!r} file")
        if entry.file == MANIFEST_NAME or entry.file in files:
            raise ModelArchiveError(
                f"archive {archive}: manifest entry {key!r} reuses the file {entry.file!r}"
            )
        files[entry.file] = key
    missing = sorted(set(files) - set(members))
    if missing:
        raise ModelArchiveError(f"archive {archive} lacks files its manifest names: {missing}")
    extra = sorted(set(members) - set(files) - {MANIFEST_NAME})
    if extra:
        raise ModelArchiveError(f"archive {archive} holds files its manifest does not name: {extra}")
    for name in sorted(files):
        _extract(tar, members[name], staging / name)
    return ModelPack(staging, pack.models)


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    """Stream one member to ``path`` (never tar's own extraction: names and modes are ours)."""
    source: IO[bytes] | None = tar.extractfile(member)
    if source is None:
        raise ModelArchiveError(f"archive member {member.name!r} has no content")
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with source, path.open("xb") as sink:
        for block in iter(lambda: source.read(1 << 20), b""):
            written += len(block)
            if written > member.size:
                raise ModelArchiveError(f"archive member {member.name!r} is longer than its header says")
            sink.write(block)
        sink.flush()
        os.fsync(sink.fileno())
    path.chmod(0o644)


def _swap_in(staging: Path, target: Path) -> None:
    """Put the verified staging folder at ``target`` by renames on one filesystem."""
    if not target.exists():
        os.rename(staging, target)
        atomic_file.fsync_folder(target.parent)
        return
    if not target.is_dir():
        raise ModelArchiveError(f"the model folder {target} exists and is not a folder")
    previous = Path(tempfile.mkdtemp(prefix=f".{target.name}.previous-", dir=target.parent))
    previous.rmdir()  # only its unique name is wanted
    os.rename(target, previous)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(previous, target)
        raise
    atomic_file.fsync_folder(target.parent)
    shutil.rmtree(previous, ignore_errors=True)
