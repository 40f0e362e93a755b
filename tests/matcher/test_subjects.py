"""Subjects of several captures in the matcher, on real faces: one answer per subject, the fused
template searched, erasure of every capture, re-keying that carries the captures along, and a
calibration that stays honest when the gallery holds multi-capture subjects; then the background
cohort that normalises scores: fewer misses at an honest FPIR, its refusals, and its keeping.

Protocol (issue #19): LFW people with three or more photos are enrolled from all but their last
photo (first photo: insert; the others: add_captures) and searched with their last; strangers are
the people with one photo, dealt into calibration and held-back halves by a fixed seed.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from safepassage import store
from safepassage.matcher import GalleryPurpose, GallerySpec, Matcher, Metric
from safepassage.matcher.errors import InvalidSearch, InvalidVector
from safepassage.matcher.fusion import mean_template
from safepassage.matcher.protection import TransformKeyring
from tests.lfw_embeddings import LfwEmbeddings

Vector = npt.NDArray[np.float32]


class People:
    """Enrolment photos (all but the last) and the last photo of people with 3+ photos; strangers."""

    def __init__(self, lfw: LfwEmbeddings) -> None:
        self.enrol: dict[str, list[Vector]] = {}
        self.last: dict[str, Vector] = {}
        for name in lfw.identities(min_images=3):
            faces = [lfw.embed(path) for path in lfw.images_of(name)]
            if faces[-1] is None or sum(f is not None for f in faces[:-1]) < 2:
                continue
            # At most the matcher's default of captures per subject (10).
            self.enrol[name] = [f for f in faces[:-1] if f is not None][:10]
            self.last[name] = faces[-1]
        singles = [n for n in lfw.identities() if len(lfw.images_of(n)) == 1]
        _, vectors = lfw.first_faces(singles)
        self.strangers = vectors
        self.metric = lfw.metric
        self.dimension = lfw.dimension
        self.threshold = lfw.default_threshold


@pytest.fixture(scope="module")
def people(lfw_embeddings: LfwEmbeddings) -> People:
    found = People(lfw_embeddings)
    assert len(found.enrol) >= 150 and len(found.strangers) >= 450
    return found


@pytest.fixture
def matcher(tmp_path: Path) -> Iterator[Matcher]:
    key = os.urandom(32)
    template_store = store.TemplateStore.open(tmp_path / "db.sqlite3", store.TemplateSealer(key))
    keyring = TransformKeyring.create_if_missing(tmp_path / "keys" / "transform.json")
    opened = Matcher(template_store, tmp_path / "snapshots", key[::-1], protection=keyring)
    opened.load()
    yield opened
    template_store.close()


def _enrol_all(matcher: Matcher, people: People, gallery: str, *, protect: bool = False) -> None:
    spec = GallerySpec(
        gallery, GalleryPurpose.WATCHLIST, "onnx", people.dimension, people.metric, people.threshold
    )
    matcher.create_gallery(spec, protect=protect)
    assert matcher.insert_many(gallery, [(n, v[0]) for n, v in people.enrol.items()]) == [None] * len(
        people.enrol
    )
    for name, vectors in people.enrol.items():
        matcher.add_captures(gallery, name, vectors[1:])


def test_each_subject_once_searched_by_its_mean(matcher: Matcher, people: People) -> None:
    _enrol_all(matcher, people, "w")
    assert matcher.count("w") == len(people.enrol)  # one index entry per subject
    names = list(people.last)
    answers = matcher.identify("w", np.stack([people.last[n] for n in names]), top_k=20)
    for answer in answers:
        listed = [c.reference_id for c in answer.candidates]
        assert len(listed) == len(set(listed)) == 20
    # The searched template is the mean template of the subject's captures.
    name = names[0]
    _, fused = matcher._store.templates.get("w", name)
    np.testing.assert_allclose(fused, mean_template(np.stack(people.enrol[name]), people.metric), atol=1e-6)
    verified = matcher.verify("w", name, people.last[name])
    assert verified.score == pytest.approx(float(np.linalg.norm(fused - people.last[name])), abs=1e-5)


def test_erasure_reaches_every_capture(matcher: Matcher, people: People) -> None:
    _enrol_all(matcher, people, "w")
    name = next(iter(people.enrol))
    matcher.delete("w", name)
    assert matcher._store.captures.counts("w", [name]) == {}
    assert all(
        c.reference_id != name
        for c in matcher.identify("w", people.last[name][None, :], top_k=50)[0].candidates
    )
    with pytest.raises(store.ReferenceNotFound):
        matcher.add_captures("w", name, people.enrol[name][:1])


def test_too_many_captures_are_refused_and_change_nothing(matcher: Matcher, people: People) -> None:
    name = next(n for n, v in people.enrol.items() if len(v) >= 2)
    spec = GallerySpec(
        "w", GalleryPurpose.WATCHLIST, "onnx", people.dimension, people.metric, people.threshold
    )
    matcher.create_gallery(spec)
    matcher.insert("w", name, people.enrol[name][0])
    most = matcher.limits.max_captures
    matcher.add_captures("w", name, [people.enrol[name][1]] * (most - 1))
    before = matcher.verify("w", name, people.last[name]).score
    with pytest.raises(store.TooManyCaptures):
        matcher.add_captures("w", name, [people.enrol[name][1]])
    assert matcher.verify("w", name, people.last[name]).score == before


def test_renewed_protection_carries_the_captures(matcher: Matcher, people: People) -> None:
    """Re-keying rewrites the captures with the templates: a capture added after it fuses with the
    old ones correctly, so the protected gallery scores exactly as a plain one."""
    subset = dict(list(people.enrol.items())[:20])
    small = People.__new__(People)
    small.__dict__.update(people.__dict__, enrol={n: v[:-1] for n, v in subset.items() if len(v) >= 3})
    _enrol_all(matcher, small, "plain")
    _enrol_all(matcher, small, "prot", protect=True)
    matcher.renew_protection()
    for name, vectors in subset.items():
        if name in small.enrol:
            matcher.add_captures("plain", name, vectors[-1:])
            matcher.add_captures("prot", name, vectors[-1:])
    for name in small.enrol:
        plain = matcher.verify("plain", name, people.last[name]).score
        assert matcher.verify("prot", name, people.last[name]).score == pytest.approx(plain, abs=1e-4)


def test_calibration_stays_honest_with_multi_capture_subjects(matcher: Matcher, people: People) -> None:
    _enrol_all(matcher, people, "w")
    order = np.random.default_rng(0).permutation(len(people.strangers))
    half = len(order) // 2
    calibration, held_back = people.strangers[order[:half]], people.strangers[order[half:]]
    for target in (0.1, 0.2):
        matcher.calibrate("w", impostors=calibration, target_fpir=target)
        answers = matcher.identify("w", held_back, top_k=1)
        measured = sum(a.match for a in answers) / len(answers)
        assert target / 2 <= measured <= target * 2, (target, measured)


# --- background cohort -------------------------------------------------------------------------


def _fnir_fpir(matcher: Matcher, gallery: str, people: People, strangers: Vector) -> tuple[float, float]:
    names = list(people.last)
    mated = matcher.identify(gallery, np.stack([people.last[n] for n in names]), top_k=1)
    misses = sum(
        not (a.candidates and a.candidates[0].reference_id == n and a.match)
        for n, a in zip(names, mated, strict=True)
    )
    flagged = sum(a.match for a in matcher.identify(gallery, strangers, top_k=1))
    return misses / len(names), flagged / len(strangers)


def test_background_cohort_misses_fewer_at_an_honest_fpir(matcher: Matcher, people: People) -> None:
    """Half the calibration strangers become the cohort, the other half calibrate the normalised
    scores; held-back strangers measure the FPIR. Same gallery, same target: fewer misses."""
    _enrol_all(matcher, people, "w")
    order = np.random.default_rng(0).permutation(len(people.strangers))
    half = len(order) // 2
    calibration, held_back = people.strangers[order[:half]], people.strangers[order[half:]]
    target = 0.1
    raw = matcher.calibrate("w", impostors=calibration, target_fpir=target)
    assert raw.background_cohort == 0
    raw_fnir, raw_fpir = _fnir_fpir(matcher, "w", people, held_back)
    normalised = matcher.calibrate("w", impostors=calibration, target_fpir=target, background_cohort=True)
    assert normalised.background_cohort == len(calibration) // 2
    fnir, fpir = _fnir_fpir(matcher, "w", people, held_back)
    assert target / 2 <= fpir <= target * 2 and target / 2 <= raw_fpir <= target * 2, (fpir, raw_fpir)
    assert fnir < raw_fnir, (fnir, raw_fnir)
    answer = matcher.identify("w", people.last[next(iter(people.last))][None, :], top_k=3)[0]
    assert all(c.normalised_score is not None for c in answer.candidates)
    ratios = [float(c.normalised_score or 0.0) for c in answer.candidates]
    assert ratios == sorted(ratios)  # one scale per probe: the order of the distances
    name = next(iter(people.last))
    verified = matcher.verify("w", name, people.last[name])
    assert verified.normalised_score is not None and verified.match == (
        verified.normalised_score <= verified.threshold
    )


def test_background_cohort_refusals(matcher: Matcher, people: People) -> None:
    _enrol_all(matcher, people, "w")
    few = people.strangers[:39]
    with pytest.raises(InvalidSearch, match="at least 40"):
        matcher.calibrate("w", impostors=few, target_fpir=0.1, background_cohort=True)
    with pytest.raises(InvalidSearch, match="target FPIR"):
        matcher.calibrate("w", impostors=people.strangers, background_cohort=True)
    with pytest.raises(InvalidSearch, match="leave-one-out"):
        matcher.calibrate("w", leave_one_out_sample=50, target_fpir=0.1, background_cohort=True)
    matcher.calibrate("w", impostors=people.strangers, target_fpir=0.1, background_cohort=True)
    # Its threshold is a ratio: dropping the cohort needs a target FPIR to set a distance again.
    with pytest.raises(InvalidSearch, match="normalised threshold"):
        matcher.calibrate("w", impostors=people.strangers)
    info = matcher.calibrate("w", impostors=people.strangers, target_fpir=0.1)
    assert info.background_cohort == 0
    cosine = GallerySpec("c", GalleryPurpose.WATCHLIST, "m", people.dimension, Metric.COSINE, 0.5)
    matcher.create_gallery(cosine)
    matcher.insert("c", "x", people.strangers[0])
    with pytest.raises(InvalidSearch, match="L2"):
        matcher.calibrate("c", impostors=people.strangers, target_fpir=0.1, background_cohort=True)


def test_background_cohort_is_sealed_kept_rekeyed_and_erased(tmp_path: Path, people: People) -> None:
    key = os.urandom(32)
    db = tmp_path / "db.sqlite3"
    keyring = TransformKeyring.create_if_missing(tmp_path / "keys" / "transform.json")

    def opened() -> tuple[Matcher, store.TemplateStore]:
        template_store = store.TemplateStore.open(db, store.TemplateSealer(key))
        matcher = Matcher(template_store, tmp_path / "snapshots", key[::-1], protection=keyring)
        matcher.load()
        return matcher, template_store

    matcher, template_store = opened()
    _enrol_all(matcher, people, "w", protect=True)
    matcher.calibrate("w", impostors=people.strangers, target_fpir=0.1, background_cohort=True)
    probes = np.stack(list(people.last.values())[:20])
    before = [[c.normalised_score for c in a.candidates] for a in matcher.identify("w", probes, top_k=3)]
    matcher.renew_protection()  # the cohort is re-keyed with the templates: the same normalised scores
    after = [[c.normalised_score for c in a.candidates] for a in matcher.identify("w", probes, top_k=3)]
    np.testing.assert_allclose(np.array(after, dtype=float), np.array(before, dtype=float), rtol=1e-4)
    matcher.close()
    template_store.close()
    raw = db.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("db.sqlite3-*"))
    assert people.strangers[0].astype("<f4").tobytes()[:16] not in raw  # sealed, never plain
    matcher, template_store = opened()  # kept across a restart
    again = [[c.normalised_score for c in a.candidates] for a in matcher.identify("w", probes, top_k=3)]
    np.testing.assert_allclose(np.array(again, dtype=float), np.array(after, dtype=float), rtol=1e-6)
    matcher.delete_gallery("w")
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM gallery_calibrations").fetchone()[0] == 0
    conn.close()
    template_store.close()


def test_captures_that_cannot_fuse_are_refused(matcher: Matcher, people: People) -> None:
    """Crafted captures (a face and its opposite) cancel out: refused, and the subject keeps its template."""
    name = next(iter(people.enrol))
    face = people.enrol[name][0]
    spec = GallerySpec(
        "w", GalleryPurpose.WATCHLIST, "onnx", people.dimension, people.metric, people.threshold
    )
    matcher.create_gallery(spec)
    matcher.insert("w", name, face)
    with pytest.raises(InvalidVector, match="do not fuse"):
        matcher.add_captures("w", name, [-face])
    assert matcher.verify("w", name, face).score == pytest.approx(0.0, abs=1e-6)


def test_captures_for_many_subjects_each_succeed_or_fail_alone(matcher: Matcher, people: People) -> None:
    names = list(people.enrol)[:5]
    spec = GallerySpec(
        "w", GalleryPurpose.WATCHLIST, "onnx", people.dimension, people.metric, people.threshold
    )
    matcher.create_gallery(spec)
    assert matcher.insert_many("w", [(n, people.enrol[n][0]) for n in names[:4]]) == [None] * 4
    items = [(n, people.enrol[n][1:]) for n in names]  # the fifth is not enrolled
    items.append((names[1], [people.enrol[names[1]][0]] * 11))  # more than a subject may hold
    outcomes = matcher.add_captures_many("w", items)
    assert [type(o).__name__ for o in outcomes] == ["SubjectChange"] * 4 + [
        "ReferenceNotFound",
        "TooManyReferences",
    ]
    assert matcher.count("w") == 4
    for name in names[:4]:  # the index follows the store: each searched by its mean
        (answer,) = matcher.identify("w", people.last[name][None, :], top_k=1)
        _, fused = matcher._store.templates.get("w", name)
        assert answer.candidates[0].score <= float(np.linalg.norm(fused - people.last[name])) + 1e-5


def test_a_subject_named_twice_in_one_batch_keeps_one_index_entry(matcher: Matcher, people: People) -> None:
    name = next(n for n, v in people.enrol.items() if len(v) >= 3)
    spec = GallerySpec(
        "w", GalleryPurpose.WATCHLIST, "onnx", people.dimension, people.metric, people.threshold
    )
    matcher.create_gallery(spec)
    matcher.insert("w", name, people.enrol[name][0])
    first, second = matcher.add_captures_many(
        "w", [(name, [people.enrol[name][1]]), (name, [people.enrol[name][2]])]
    )
    assert isinstance(second, store.SubjectChange) and isinstance(first, store.SubjectChange)
    assert second.removed == first.added and second.captures == 3
    assert matcher.count("w") == 1  # the first change's entry left the index with its row
    (answer,) = matcher.identify("w", people.last[name][None, :], top_k=5)
    assert [c.reference_id for c in answer.candidates] == [name]
    _, fused = matcher._store.templates.get("w", name)
    assert answer.candidates[0].score == pytest.approx(
        float(np.linalg.norm(fused - people.last[name])), abs=1e-5
    )
