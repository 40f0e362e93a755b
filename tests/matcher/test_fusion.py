"""The multi-capture core (safepassage/matcher/fusion.py): fused templates, per-subject answers, cohorts.

Small hand-checked arrays pin the edge cases (empty slots, ties, a subject several times, fewer
subjects than k); a plain-Python reference checks the vectorised collapse on random answers; real LFW
faces (tests/lfw_embeddings.py) check the behaviour the comparison in benchmarks/fusion_comparison.py
measured.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from safepassage.core.metric import Metric
from safepassage.matcher.fusion import (
    SubjectMatch,
    background_cohort_scale,
    best_score,
    cohort_normalise,
    collapse_to_subjects,
    fuse_hits,
    gallery_cohort_scale,
    mean_template,
    search_depth,
)
from safepassage.matcher.search import exact_search
from tests.lfw_embeddings import LfwEmbeddings

INF = math.inf

# Template id -> subject: templates 0, 1, 2 are subject 0's captures, 3 and 4 subject 1's, 5 subject 2's.
OWNER = np.array([0, 0, 0, 1, 1, 2], dtype=np.int64)

# A person of the shared LFW subset whose last photo (0009) the first photo alone misses (distance
# 0.619: above dlib's 1:1 threshold 0.6 and the watchlist default 0.5; in the one-photo gallery of 303
# someone else even ranks first) while the other eight find it (max-score 0.357, mean template 0.335):
# the widest margin of benchmarks/fusion_comparison.py's cases (results/fusion.json,
# "cases_missed_by_one_photo_found_with_all").
CASE = "Vaclav_Havel"


def as_tuples(rows: list[list[SubjectMatch]]) -> list[list[tuple[object, float, int]]]:
    return [[(m.subject, round(m.score, 6), m.template_id) for m in row] for row in rows]


# -- collapse_to_subjects / fuse_hits -------------------------------------------------------------------


def test_each_subject_once_at_its_best_capture_closest_first() -> None:
    ids = [[1, 3, 0, 5, 4, 2]]
    scores = [[0.20, 0.30, 0.35, 0.40, 0.45, 0.50]]
    rows = collapse_to_subjects(ids, scores, OWNER)
    assert as_tuples(rows) == [[(0, 0.2, 1), (1, 0.3, 3), (2, 0.4, 5)]]


def test_empty_slots_are_skipped_and_padded() -> None:
    ids = [[4, -1, -1], [-1, -1, -1]]
    scores = [[0.3, INF, INF], [INF, INF, INF]]
    fused = fuse_hits(ids, scores, OWNER)
    assert fused.subjects.tolist() == [[1, -1, -1], [-1, -1, -1]]
    assert fused.template_ids.tolist() == [[4, -1, -1], [-1, -1, -1]]
    assert fused.scores[0, 0] == pytest.approx(0.3) and np.isinf(fused.scores[0, 1:]).all()
    assert fused.counts().tolist() == [1, 0]
    assert as_tuples(fused.rows()) == [[(1, 0.3, 4)], []]


def test_fewer_subjects_than_k_leave_the_rest_empty() -> None:
    ids = [[0, 3, 1, 2, 4, 5]]
    scores = [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]]
    fused = fuse_hits(ids, scores, OWNER)
    assert fused.subjects.shape == (1, 6)
    assert fused.subjects[0].tolist() == [0, 1, 2, -1, -1, -1]
    assert fused.template_ids[0].tolist() == [0, 3, 5, -1, -1, -1]
    assert np.isinf(fused.scores[0, 3:]).all()


def test_limit_keeps_the_closest_subjects() -> None:
    fused = fuse_hits([[5, 0, 3]], [[0.1, 0.2, 0.3]], OWNER, limit=2)
    assert fused.subjects.tolist() == [[2, 0]]
    assert fuse_hits([[5, 0, 3]], [[0.1, 0.2, 0.3]], OWNER, limit=0).subjects.shape == (1, 0)


def test_ties_keep_the_search_order() -> None:
    # Two captures of subject 0 at the same distance: the first in the answer names the match.
    # Subjects 1 and 2 tie: the one found first ranks first.
    rows = collapse_to_subjects([[2, 1, 5, 3]], [[0.25, 0.25, 0.4, 0.4]], OWNER)
    assert as_tuples(rows) == [[(0, 0.25, 2), (2, 0.4, 5), (1, 0.4, 3)]]


def test_an_unsorted_answer_is_ordered_closest_first() -> None:
    rows = collapse_to_subjects([[3, 0, 4, 1]], [[0.5, 0.4, 0.2, 0.3]], OWNER)
    assert as_tuples(rows) == [[(1, 0.2, 4), (0, 0.3, 1)]]


def test_cosine_similarities_run_the_other_way() -> None:
    rows = collapse_to_subjects([[0, 3, 1]], [[0.5, 0.9, 0.7]], OWNER, Metric.COSINE)
    assert as_tuples(rows) == [[(1, 0.9, 3), (0, 0.7, 1)]]
    fused = fuse_hits([[0, -1]], [[0.5, -INF]], OWNER, Metric.COSINE)
    assert fused.subjects.tolist() == [[0, -1]] and fused.scores[0, 1] == -INF


def test_a_mapping_names_subjects_and_drops_unknown_templates() -> None:
    subject_of = {10: "alice", 11: "alice", 20: "bob"}
    # 99 was deleted since the search (the store no longer knows it): left out, as identify does.
    rows = collapse_to_subjects(
        [[11, 99, 20, 10], [20, -1, -1, -1]], [[0.1, 0.15, 0.2, 0.3], [0.4, INF, INF, INF]], subject_of
    )
    assert as_tuples(rows) == [[("alice", 0.1, 11), ("bob", 0.2, 20)], [("bob", 0.4, 20)]]


def test_ids_beyond_the_owner_table_are_unknown() -> None:
    rows = collapse_to_subjects([[7, 3]], [[0.1, 0.2]], OWNER)
    assert as_tuples(rows) == [[(1, 0.2, 3)]]
    assert collapse_to_subjects([[0]], [[0.1]], np.zeros(0, np.int64)) == [[]]


def test_malformed_answers_are_refused() -> None:
    with pytest.raises(ValueError, match="two"):
        fuse_hits([1, 2], [0.1, 0.2], OWNER)
    with pytest.raises(ValueError, match="two"):
        fuse_hits([[1, 2]], [[0.1]], OWNER)
    with pytest.raises(ValueError, match="limit"):
        fuse_hits([[1]], [[0.1]], OWNER, limit=-1)


def reference_collapse(
    ids: npt.NDArray[np.int64], scores: npt.NDArray[np.float32], owner: npt.NDArray[np.int64]
) -> list[list[tuple[object, float, int]]]:
    """The plain-Python definition: sort by distance (stable), keep each subject's first."""
    out = []
    for row_ids, row_scores in zip(ids, scores, strict=True):
        pairs = [(float(s), int(i)) for i, s in zip(row_ids, row_scores, strict=True) if 0 <= i < len(owner)]
        pairs.sort(key=lambda p: p[0])
        seen: set[int] = set()
        row: list[tuple[object, float, int]] = []
        for score, template in pairs:
            subject = int(owner[template])
            if subject not in seen:
                seen.add(subject)
                row.append((subject, round(score, 6), template))
        out.append(row)
    return out


def test_vectorised_collapse_matches_the_plain_definition() -> None:
    rng = np.random.default_rng(7)
    owner = rng.integers(0, 15, size=60).astype(np.int64)
    ids = np.stack([rng.permutation(60)[:20] for _ in range(300)]).astype(np.int64)
    ids[rng.random(ids.shape) < 0.1] = -1
    # Rounded scores make ties common; the reference's stable sort sets the expected order.
    scores = np.round(rng.random(ids.shape), 1).astype(np.float32)
    assert as_tuples(collapse_to_subjects(ids, scores, owner)) == reference_collapse(ids, scores, owner)


def test_search_depth_covers_every_capture_of_the_top_subjects() -> None:
    assert search_depth(11, 10) == 110
    assert search_depth(11, 10, limit=100) == 100
    assert search_depth(5, 1) == 5
    with pytest.raises(ValueError):
        search_depth(0, 3)


# -- mean_template and best_score -----------------------------------------------------------------


def test_mean_template_keeps_the_captures_scale_for_l2() -> None:
    captures = np.array([[3.0, 0.0], [0.0, 1.0]], np.float32)
    template = mean_template(captures, Metric.L2)
    # Direction of the mean (1.5, 0.5); length the captures' mean norm, 2.
    assert template.dtype == np.float32
    assert np.linalg.norm(template) == pytest.approx(2.0)
    assert template[0] / template[1] == pytest.approx(3.0)
    one = np.array([[0.2, -0.4, 0.1]], np.float32)
    np.testing.assert_allclose(mean_template(one, Metric.L2), one[0], rtol=1e-6)


def test_mean_template_for_cosine_is_unit_length() -> None:
    template = mean_template(np.array([[2.0, 0.0], [0.0, 5.0]], np.float32), Metric.COSINE)
    np.testing.assert_allclose(template, [math.sqrt(0.5), math.sqrt(0.5)], rtol=1e-6)


@pytest.mark.parametrize(
    ("captures", "message"),
    [
        (np.zeros((0, 4), np.float32), "at least one"),
        (np.zeros((2, 4), np.float32), "zero vector"),
        (np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32), "cancel"),
        (np.array([[np.nan, 0.0]], np.float32), "finite"),
        (np.zeros(4, np.float32), r"\(m, d\)"),
    ],
)
def test_mean_template_refuses_what_has_no_mean(captures: npt.NDArray[np.float32], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mean_template(captures, Metric.L2)


def test_best_score_is_the_closest_template() -> None:
    templates = np.array([[0.0, 3.0], [1.0, 0.0], [5.0, 5.0]], np.float32)
    score, which = best_score(np.array([0.0, 0.0], np.float32), templates, Metric.L2)
    assert score == pytest.approx(1.0) and which == 1
    score, which = best_score(np.array([1.0, 1.0], np.float32), templates, Metric.COSINE)
    assert score == pytest.approx(1.0) and which == 2


# -- cohort normalisation -------------------------------------------------------------------------


def test_gallery_cohort_is_the_mean_of_the_next_subjects() -> None:
    scores = np.array([[0.3, 0.6, 0.9, INF], [0.4, INF, INF, INF], [INF, INF, INF, INF]], np.float32)
    scale = gallery_cohort_scale(scores, Metric.L2, cohort_size=2)
    assert scale[0] == pytest.approx(0.75)
    assert np.isnan(scale[1]) and np.isnan(scale[2])  # no cohort: one subject, or none
    assert gallery_cohort_scale(scores, Metric.L2, cohort_size=10)[0] == pytest.approx(0.75)
    assert gallery_cohort_scale(scores, Metric.L2, cohort_size=1)[0] == pytest.approx(0.6)
    ratios = cohort_normalise(scores, scale, Metric.L2)
    np.testing.assert_allclose(ratios[0, :3], [0.4, 0.8, 1.2], rtol=1e-6)
    assert np.isinf(ratios[0, 3]) and np.isinf(ratios[1]).all() and np.isinf(ratios[2]).all()
    with pytest.raises(ValueError):
        gallery_cohort_scale(scores, Metric.L2, cohort_size=0)


def test_cosine_cohorts_use_one_minus_similarity() -> None:
    scores = np.array([[0.9, 0.6, 0.4, -INF]], np.float32)
    scale = gallery_cohort_scale(scores, Metric.COSINE, cohort_size=3)
    assert scale[0] == pytest.approx(0.5)  # (0.4 + 0.6) / 2: the empty slot is no cohort member
    ratios = cohort_normalise(scores, scale, Metric.COSINE)
    np.testing.assert_allclose(ratios[0, :3], [0.2, 0.8, 1.2], rtol=1e-5)
    assert np.isinf(ratios[0, 3])


def test_background_cohort_is_the_mean_distance_to_the_nearest_faces() -> None:
    background = np.array([[3.0, 4.0], [0.0, 1.0], [0.0, 2.0]], np.float32)
    probes = np.array([[0.0, 0.0], [3.0, 4.0]], np.float32)
    scale = background_cohort_scale(probes, background, Metric.L2, cohort_size=2)
    np.testing.assert_allclose(scale, [1.5, (0.0 + math.hypot(3, 2)) / 2], rtol=1e-6)
    cosine = background_cohort_scale(np.array([[1.0, 0.0]], np.float32), background, Metric.COSINE, 1)
    assert cosine[0] == pytest.approx(1.0 - 0.6)
    with pytest.raises(ValueError, match="fewer than the cohort"):
        background_cohort_scale(probes, background, Metric.L2, cohort_size=4)
    with pytest.raises(ValueError, match="dimension"):
        background_cohort_scale(np.zeros((1, 3), np.float32), background, Metric.L2, cohort_size=1)


def test_normalising_keeps_each_probes_order() -> None:
    rng = np.random.default_rng(3)
    scores = np.sort(rng.random((50, 8)).astype(np.float32) + 0.2, axis=1)
    ratios = cohort_normalise(scores, rng.random(50) + 0.5, Metric.L2)
    assert (np.diff(ratios, axis=1) >= 0).all()
    with pytest.raises(ValueError):
        cohort_normalise(scores, np.ones(3), Metric.L2)


# -- on real faces ----------------------------------------------------------------------------------


def test_several_photos_find_the_person_one_photo_misses(lfw_embeddings: LfwEmbeddings) -> None:
    """The benchmark's case: the last photo against the first alone, and against all the others."""
    paths = lfw_embeddings.images_of(CASE)
    vectors = [lfw_embeddings.embed(p) for p in paths]
    assert all(v is not None for v in vectors), "every photo of the case shows a face"
    captures = np.stack([v for v in vectors[:-1] if v is not None])
    probe = vectors[-1]
    assert probe is not None
    one_photo, _ = best_score(probe, captures[:1], Metric.L2)
    max_score, _ = best_score(probe, captures, Metric.L2)
    mean_score, _ = best_score(probe, mean_template(captures, Metric.L2)[None, :], Metric.L2)
    assert one_photo > 0.6, "the first photo alone misses at dlib's 1:1 threshold"
    assert max_score < 0.5 and mean_score < 0.5, "all the other photos find them at the watchlist default"


def test_a_real_gallery_answers_each_person_once(lfw_embeddings: LfwEmbeddings) -> None:
    people = [name for name in lfw_embeddings.identities(min_images=4)][:8]
    templates: list[npt.NDArray[np.float32]] = []
    owner: list[int] = []
    probes: list[npt.NDArray[np.float32]] = []
    for subject, name in enumerate(people):
        faces = lfw_embeddings.faces_of(name, limit=4)
        templates.extend(faces[:-1])
        owner.extend([subject] * (len(faces) - 1))
        probes.append(faces[-1])
    vectors = np.stack(templates)
    hits = exact_search(
        vectors, np.arange(len(vectors), dtype=np.int64), np.stack(probes), len(vectors), Metric.L2
    )
    fused = fuse_hits(hits.ids, hits.scores, np.array(owner, np.int64), Metric.L2, limit=len(vectors))
    for row, subjects in enumerate(fused.subjects):
        found = subjects[subjects >= 0].tolist()
        assert sorted(found) == list(range(len(people))), "every subject once, none twice"
        assert found[0] == row, f"{people[row]}'s held-out photo finds them first"
        scores = fused.scores[row, : len(found)]
        assert (np.diff(scores) >= 0).all()
    # The matching template is one of the subject's own, and its distance is the subject's closest.
    owners = np.array(owner)
    assert (owners[fused.template_ids[fused.subjects >= 0]] == fused.subjects[fused.subjects >= 0]).all()
