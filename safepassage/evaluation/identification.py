"""Open-set 1:N identification through the service's real matcher, as NIST FRTE 1:N runs it.

The gallery holds one image per enrolled identity (its first image); mated searches are that
person's other images, non-mated searches are people never enrolled. Every search goes through
``safepassage.matcher.Matcher.identify`` on a temporary store (safepassage.store.TemplateStore +
TemplateSealer, as the service builds one), and keeps its top-k reference ids and scores whatever the
threshold: the error rates are computed afterwards for every threshold (metrics.py).

The gallery then grows with distractors (people enrolled but never searched for, from the
single-image identities) and every search is repeated at each size. When a requested size needs more
distractors than the data has, synthetic distractors are drawn from a Gaussian fitted to the real
distractors' embeddings; they are labelled ``synthetic-NNNNNN`` and counted apart, because random
vectors are easier to tell from a face than a real stranger is.

Failures count against the system (ISO/IEC 19795-1): an enrolled person whose gallery image held no
face is not in the gallery, so their mated searches miss; a mated probe with no face is a miss; a
non-mated probe with no face raises no alarm (top score = the metric's worst score).
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from safepassage import store
from safepassage.evaluation.data import LabelledSet
from safepassage.evaluation.embed import Embeddings
from safepassage.matcher import GalleryPurpose, GallerySpec, Matcher

TOP_K = 10
SYNTHETIC_PREFIX = "synthetic-"
_GALLERY = "evaluation"
_CHUNK = 5_000  # under SearchLimits.max_batch (10 000) for inserts and searches


@dataclass(frozen=True)
class IdentificationProtocol:
    """Who is enrolled with which image, who searches, who fills the gallery: one for every pipeline."""

    enrolled: Mapping[str, Path]  # identity -> its gallery image
    mated_probes: tuple[tuple[str, Path], ...]  # (identity, image): other images of enrolled people
    nonmated_probes: tuple[tuple[str, Path], ...]  # people never enrolled
    distractors: tuple[tuple[str, Path], ...]  # enrolled to grow the gallery, never searched for
    # identity -> its further gallery images, added as captures of the same subject (Matcher.add_captures)
    captures: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)

    def images(self) -> list[Path]:
        paths = list(self.enrolled.values())
        paths.extend(path for group in self.captures.values() for path in group)
        for group in (self.mated_probes, self.nonmated_probes, self.distractors):
            paths.extend(path for _, path in group)
        return paths


def make_protocol(
    labelled: LabelledSet, seed: int = 0, nonmated_share: float = 0.5
) -> IdentificationProtocol:
    """Split a labelled set into gallery, mated and non-mated searches, and distractors.

    Identities with two or more images are enrolled with their first image and searched with the rest.
    ``nonmated_share`` of the single-image identities (drawn with ``seed``) search as strangers, the
    others are distractors. A set without single-image identities (face_recognition/) holds back that
    share of its multi-image identities as strangers instead, every image of them searching.
    """
    if not 0 < nonmated_share < 1:
        raise ValueError(f"nonmated_share must be between 0 and 1, got {nonmated_share}")
    rng = random.Random(seed)
    multi, single = labelled.multi_image(), labelled.single_image()
    if single:
        strangers = set(rng.sample(single, round(len(single) * nonmated_share)))
        fillers = [name for name in single if name not in strangers]
    else:
        strangers = set(rng.sample(multi, max(1, round(len(multi) * nonmated_share / 2)))) if multi else set()
        fillers = []
    enrolled_names = [name for name in multi if name not in strangers]
    if not enrolled_names:
        raise ValueError("no identity with two or more images is left to enrol")
    people = labelled.identities
    return IdentificationProtocol(
        enrolled={name: people[name][0] for name in enrolled_names},
        mated_probes=tuple((name, path) for name in enrolled_names for path in people[name][1:]),
        nonmated_probes=tuple((name, path) for name in sorted(strangers) for path in people[name]),
        distractors=tuple((name, people[name][0]) for name in fillers),
    )


@dataclass(frozen=True)
class Search:
    """One search: the probe, whose it is, and the matcher's top-k answer (closest first)."""

    identity: str
    probe: Path
    mated: bool
    reference_ids: tuple[str, ...]
    scores: tuple[float, ...]
    face_found: bool
    quality: float | None

    def rank_of_true(self) -> int:
        """1-based rank of the probe's own identity among the candidates; 0 when absent."""
        try:
            return self.reference_ids.index(self.identity) + 1
        except ValueError:
            return 0


@dataclass(frozen=True)
class GalleryRun:
    """Every mated and non-mated search against a gallery of ``gallery_size`` references."""

    pipeline: str
    gallery_size: int
    enrolled: int  # mated identities in the gallery
    real_distractors: int
    synthetic_distractors: int
    enrolment_failures: tuple[str, ...]  # identities whose gallery image held no face
    higher_is_closer: bool
    mated: tuple[Search, ...]
    nonmated: tuple[Search, ...]

    def worst_score(self) -> float:
        return float("-inf") if self.higher_is_closer else float("inf")

    def open_set_arrays(
        self,
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """(mated_rank1, mated_rank_of_true, nonmated_top) for metrics.OpenSetScores.

        mated_rank1 is the top candidate's score where it is the right identity, else the worst score
        (a wrong top candidate is a miss at any threshold, the FNIR convention of NIST FRTE 1:N).
        """
        worst = self.worst_score()
        rank1 = np.array(
            [s.scores[0] if s.rank_of_true() == 1 else worst for s in self.mated], dtype=np.float64
        )
        ranks = np.array([s.rank_of_true() for s in self.mated], dtype=np.int64)
        top = np.array([s.scores[0] if s.scores else worst for s in self.nonmated], dtype=np.float64)
        return rank1, ranks, top

    def qualities(self) -> npt.NDArray[np.float64]:
        """The mated probes' edge quality (NaN where the ONNX detector found no face), for quartiles."""
        return np.array([np.nan if s.quality is None else s.quality for s in self.mated], dtype=np.float64)


def default_gallery_sizes(protocol: IdentificationProtocol, steps: int = 4) -> list[int]:
    """From the enrolled people alone up to every real distractor added, in ``steps`` even steps."""
    base, extra = len(protocol.enrolled), len(protocol.distractors)
    return sorted({base + round(extra * i / steps) for i in range(steps + 1)})


def identify(
    embeddings: Embeddings,
    protocol: IdentificationProtocol,
    gallery_sizes: Sequence[int] | None = None,
    top_k: int = TOP_K,
    seed: int = 0,
    work_dir: Path | None = None,
) -> list[GalleryRun]:
    """Search every probe at each gallery size (ascending), growing one real gallery in the matcher.

    Sizes count references actually in the gallery; a size below the enrolled people is refused.
    Distractors are added in the protocol's order (real ones first, then synthetic ones).
    """
    model = embeddings.model
    gallery = [(name, embeddings.vector(path)) for name, path in protocol.enrolled.items()]
    enrolled = [(name, vector) for name, vector in gallery if vector is not None]
    failures = tuple(name for name, vector in gallery if vector is None)
    real = [(name, embeddings.vector(path)) for name, path in protocol.distractors]
    fillers = [(name, vector) for name, vector in real if vector is not None]
    if gallery_sizes is None:  # as default_gallery_sizes, counting only the faces the pipeline found
        gallery_sizes = [len(enrolled) + round(len(fillers) * i / 4) for i in range(5)]
    sizes = sorted(set(gallery_sizes))
    if sizes and sizes[0] < len(enrolled):
        raise ValueError(f"gallery size {sizes[0]} is below the {len(enrolled)} enrolled people")
    wanted = (sizes[-1] if sizes else len(enrolled)) - len(enrolled)
    synthetic = max(0, wanted - len(fillers))
    if synthetic:
        fillers += _synthetic(np.stack([v for _, v in fillers or enrolled]), synthetic, seed)

    def searches(group: Sequence[tuple[str, Path]], mated: bool) -> list[tuple[str, Path, bool]]:
        return [(name, path, mated) for name, path in group]

    probes = searches(protocol.mated_probes, True) + searches(protocol.nonmated_probes, False)
    runs: list[GalleryRun] = []
    with tempfile.TemporaryDirectory(prefix="evaluation-", dir=work_dir) as folder:
        key = os.urandom(32)
        template_store = store.TemplateStore.open(Path(folder) / "db.sqlite3", store.TemplateSealer(key))
        matcher = Matcher(template_store, Path(folder) / "snapshots", key[::-1])
        try:
            matcher.load()
            matcher.create_gallery(
                GallerySpec(
                    _GALLERY,
                    GalleryPurpose.WATCHLIST,
                    model.name,
                    model.dimension,
                    model.metric,
                    model.default_threshold,
                )
            )
            labels = _Labels()
            references = _insert(matcher, labels, enrolled)
            _add_captures(matcher, references, embeddings, protocol.captures)
            added = 0
            for size in sizes:
                batch = fillers[added : size - len(enrolled)]
                _insert(matcher, labels, batch)
                added += len(batch)
                results = _search(matcher, labels, embeddings, probes, top_k)
                runs.append(
                    GalleryRun(
                        pipeline=embeddings.pipeline,
                        gallery_size=matcher.count(_GALLERY),
                        enrolled=len(enrolled),
                        real_distractors=min(added, len(fillers) - synthetic),
                        synthetic_distractors=max(0, added - (len(fillers) - synthetic)),
                        enrolment_failures=failures,
                        higher_is_closer=model.metric.higher_is_closer,
                        mated=tuple(s for s in results if s.mated),
                        nonmated=tuple(s for s in results if not s.mated),
                    )
                )
        finally:
            matcher.close()
            template_store.close()
    return runs


class _Labels:
    """Gallery labels (identity names, ``synthetic-N``) to matcher reference ids and back.

    Reference ids allow only letters, digits and ``._:@/-``; identity folder names may hold more.
    """

    def __init__(self) -> None:
        self.by_reference: dict[str, str] = {}

    def reference(self, label: str) -> str:
        reference = f"r{len(self.by_reference):07d}"
        self.by_reference[reference] = label
        return reference


def _insert(
    matcher: Matcher, labels: _Labels, items: Sequence[tuple[str, npt.NDArray[np.float32]]]
) -> dict[str, str]:
    """Insert one-capture subjects; returns label -> reference id."""
    references: dict[str, str] = {}
    for start in range(0, len(items), _CHUNK):
        chunk = [(labels.reference(name), vector) for name, vector in items[start : start + _CHUNK]]
        refused = [error for error in matcher.insert_many(_GALLERY, chunk) if error is not None]
        if refused:
            raise RuntimeError(f"the matcher refused {len(refused)} gallery templates: {refused[0]}")
        references.update((labels.by_reference[reference], reference) for reference, _ in chunk)
    return references


def _add_captures(
    matcher: Matcher,
    references: Mapping[str, str],
    embeddings: Embeddings,
    captures: Mapping[str, tuple[Path, ...]],
) -> None:
    """Each enrolled subject's further images as its captures; images with no face are left out, as
    an enrolment station would retake them."""
    items = []
    for name, paths in captures.items():
        vectors = [v for v in (embeddings.vector(path) for path in paths) if v is not None]
        if name in references and vectors:
            items.append((references[name], vectors[: matcher.limits.max_captures - 1]))
    for start in range(0, len(items), _CHUNK):
        refused = [
            o
            for o in matcher.add_captures_many(_GALLERY, items[start : start + _CHUNK])
            if isinstance(o, Exception)
        ]
        if refused:
            raise RuntimeError(f"the matcher refused the captures of {len(refused)} subjects: {refused[0]}")


def _search(
    matcher: Matcher,
    labels: _Labels,
    embeddings: Embeddings,
    probes: Sequence[tuple[str, Path, bool]],
    top_k: int,
) -> list[Search]:
    found = [(name, path, mated) for name, path, mated in probes if embeddings.vector(path) is not None]
    answers: dict[Path, tuple[tuple[str, ...], tuple[float, ...]]] = {}
    for start in range(0, len(found), _CHUNK):
        chunk = found[start : start + _CHUNK]
        vectors = np.stack([embeddings.vector(path) for _, path, _ in chunk])  # type: ignore[misc]
        for (_, path, _), result in zip(chunk, matcher.identify(_GALLERY, vectors, top_k=top_k), strict=True):
            answers[path] = (
                tuple(labels.by_reference[c.reference_id] for c in result.candidates),
                tuple(float(c.score) for c in result.candidates),
            )
    return [
        Search(
            identity=name,
            probe=path,
            mated=mated,
            reference_ids=answers.get(path, ((), ()))[0],
            scores=answers.get(path, ((), ()))[1],
            face_found=path in answers,
            quality=embeddings.quality(path),
        )
        for name, path, mated in probes
    ]


def _synthetic(
    real: npt.NDArray[np.float32], count: int, seed: int
) -> list[tuple[str, npt.NDArray[np.float32]]]:
    """``count`` vectors from a Gaussian with the real embeddings' mean and covariance (diagonal if few)."""
    rng = np.random.default_rng(seed)
    data = real.astype(np.float64)
    mean = data.mean(axis=0)
    if len(data) > 2 * data.shape[1]:
        covariance = np.cov(data, rowvar=False)
    else:
        covariance = np.diag(data.var(axis=0) + 1e-6)
    drawn = rng.multivariate_normal(mean, covariance, size=count, method="eigh").astype(np.float32)
    return [(f"{SYNTHETIC_PREFIX}{i:06d}", drawn[i]) for i in range(count)]
