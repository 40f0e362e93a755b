"""Labelled face sets, LFW pairs files and cohort metadata: what the evaluation is run on.

A labelled set is a folder with one sub-folder per identity (``../shared/data/faces/lfw``, or
``faces/face_recognition``). Identity labels are only comparable within one such folder (the data
README: two sources label the same person independently), so a set is always read from one folder.
"""

from __future__ import annotations

import csv
import hashlib
import random
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from safepassage.core.image_formats import IMAGE_SUFFIXES
from safepassage.face import FacesError, ImageLimits, read_header

# The names of every format the service reads: the client's own list (`import`, `calibrate`), so the
# evaluation reads the files the client would send, and reads them as the server does (by their bytes).
SUFFIXES = IMAGE_SUFFIXES

# The same portrait as obama.jpg, letterboxed or resized (see the data README): not independent
# samples, so they would flatter genuine-pair statistics. tests/server/test_accuracy.py skips the same.
NEAR_DUPLICATES = frozenset(
    {"obama-240p.jpg", "obama-480p.jpg", "obama-720p.jpg", "obama-1080p.jpg", "obama_small.jpg"}
)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, hex: the key of embedding caches and of duplicate detection."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class LabelledSet:
    """Identities and their images, sorted by identity name and file name (so runs are reproducible)."""

    root: Path
    identities: Mapping[str, tuple[Path, ...]]
    skipped_duplicates: int = 0
    # Files that are not an image the service reads (by their bytes), with the reason: listed, not used.
    unreadable: tuple[tuple[Path, str], ...] = ()

    @classmethod
    def from_folder(cls, root: Path, min_images: int = 1) -> LabelledSet:
        """Every identity folder of ``root`` with at least ``min_images`` distinct images.

        Known near-duplicates (``NEAR_DUPLICATES``) and files whose bytes repeat another file of the
        same identity are skipped: they are one sample, not two. Files whose header is not one of an
        image the service reads (format from the bytes, size, dimensions) are skipped and listed in
        ``unreadable``.
        """
        if not root.is_dir():
            raise FileNotFoundError(f"no labelled face folder at {root}")
        found: dict[str, tuple[Path, ...]] = {}
        skipped = 0
        unreadable: list[tuple[Path, str]] = []
        limits = ImageLimits()
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            files: list[Path] = []
            seen: set[str] = set()
            for path in sorted(folder.iterdir()):
                if not path.is_file() or path.suffix.lower() not in SUFFIXES:
                    continue
                try:
                    data = path.read_bytes()
                except OSError as error:  # no permission, gone since listed: listed, never a crash
                    unreadable.append((path, error.strerror or type(error).__name__))
                    continue
                digest = hashlib.sha256(data).hexdigest()
                if path.name in NEAR_DUPLICATES or digest in seen:
                    skipped += 1
                    continue
                try:
                    read_header(data, limits)
                except FacesError as error:
                    unreadable.append((path, str(error)))
                    continue
                seen.add(digest)
                files.append(path)
            if len(files) >= max(1, min_images):
                found[folder.name] = tuple(files)
        if not found:
            why = (
                f"; {len(unreadable)} files are not images the service reads, such as"
                f" {unreadable[0][0].name}: {unreadable[0][1]}"
                if unreadable
                else ""
            )
            raise ValueError(f"{root} holds no identity folder with at least {min_images} images{why}")
        return cls(root, found, skipped, tuple(unreadable))

    def __len__(self) -> int:
        return len(self.identities)

    def images(self) -> list[Path]:
        return [path for paths in self.identities.values() for path in paths]

    def identity_of(self) -> dict[Path, str]:
        return {path: name for name, paths in self.identities.items() for path in paths}

    def multi_image(self) -> list[str]:
        """Identities with two or more images: the only ones that give genuine pairs or mated searches."""
        return [name for name, paths in self.identities.items() if len(paths) >= 2]

    def single_image(self) -> list[str]:
        return [name for name, paths in self.identities.items() if len(paths) == 1]

    def subset(self, names: Iterable[str]) -> LabelledSet:
        wanted = set(names)
        return LabelledSet(
            self.root,
            {n: p for n, p in self.identities.items() if n in wanted},
            self.skipped_duplicates,
            self.unreadable,
        )

    def without(self, dropped: Collection[Path]) -> LabelledSet:
        """This set less the files of ``dropped`` (found unreadable only when decoded); an identity left
        with no image goes."""
        kept = {n: tuple(p for p in paths if p not in dropped) for n, paths in self.identities.items()}
        return LabelledSet(
            self.root,
            {n: paths for n, paths in kept.items() if paths},
            self.skipped_duplicates,
            self.unreadable,
        )

    def sample(self, limit: int | None, seed: int = 0) -> LabelledSet:
        """At most ``limit`` identities, drawn with ``seed``; multi- and single-image ones keep their mix."""
        if limit is None or limit >= len(self.identities):
            return self
        rng = random.Random(seed)
        multi, single = self.multi_image(), self.single_image()
        take_multi = max(1, round(limit * len(multi) / len(self.identities))) if multi else 0
        take_multi = min(take_multi, len(multi), limit)
        chosen = rng.sample(multi, take_multi) + rng.sample(single, min(len(single), limit - take_multi))
        return self.subset(chosen)


@dataclass(frozen=True)
class Pair:
    """One LFW pair: two images, same person or not, and its fold (1-based)."""

    fold: int
    first: Path
    second: Path
    genuine: bool


@dataclass(frozen=True)
class Pairs:
    """The pairs of a pairs file whose two images are present, and how many were not."""

    pairs: tuple[Pair, ...]
    missing: int = 0
    folds: tuple[int, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.pairs)

    def __iter__(self) -> Iterator[Pair]:
        return iter(self.pairs)

    def images(self) -> list[Path]:
        return sorted({p.first for p in self.pairs} | {p.second for p in self.pairs})


def read_pairs(path: Path, images_root: Path | None = None) -> Pairs:
    """Read LFW ``pairs.txt`` or the ``fold<TAB>...`` subset format of ``lfw_protocol``.

    pairs.txt starts with ``<folds> <pairs per kind>``; its fold of a line is its position (each fold
    is that many matched then that many mismatched pairs). The subset format has a fold column first
    and ``#`` comments. Images are ``images_root/<name>/<name>_<NNNN>.jpg``; ``images_root`` defaults
    to the ``lfw`` folder beside the file's folder (``faces/lfw_protocol/..`` -> ``faces/lfw``).
    """
    root = images_root if images_root is not None else path.parent.parent / "lfw"
    lines = [line.split() for line in path.read_text().splitlines()]
    lines = [parts for parts in lines if parts and not parts[0].startswith("#")]
    per_fold: int | None = None
    if lines and len(lines[0]) == 2 and all(p.isdigit() for p in lines[0]):
        per_fold = 2 * int(lines[0][1])
        lines = lines[1:]

    def image(name: str, number: str) -> Path:
        return root / name / f"{name}_{int(number):04d}.jpg"

    pairs: list[Pair] = []
    missing = 0
    for position, parts in enumerate(lines):
        if per_fold is not None:
            fold, fields = position // per_fold + 1, parts
        else:
            fold, fields = int(parts[0]), parts[1:]
        if len(fields) == 3:
            pair = Pair(fold, image(fields[0], fields[1]), image(fields[0], fields[2]), True)
        elif len(fields) == 4:
            pair = Pair(fold, image(fields[0], fields[1]), image(fields[2], fields[3]), False)
        else:
            raise ValueError(f"{path}: cannot read pair line {' '.join(parts)!r}")
        if pair.first.is_file() and pair.second.is_file():
            pairs.append(pair)
        else:
            missing += 1
    return Pairs(tuple(pairs), missing, tuple(sorted({p.fold for p in pairs})))


def read_cohorts(path: Path) -> dict[str, str]:
    """Group label per identity from a CSV of ``identity,group`` rows (a header row is optional)."""
    groups: dict[str, str] = {}
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle)):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise ValueError(f"{path}:{number + 1}: expected identity,group")
            identity, group = row[0].strip(), row[1].strip()
            if number == 0 and identity.lower() == "identity":
                continue
            groups[identity] = group
    return groups
