"""Calibrated thresholds on real faces: the FPIR measured on held-back impostors is within a factor
of 2 of the target (issue #7's acceptance test).

Data. 700 LFW identities (a seeded draw from the 835 in ../shared/data/faces/lfw), the first photo
of each, embedded once by the server's ONNX pipeline (tests/lfw_embeddings.py). One photo per
person, so every impostor search is a different person and the searches are independent trials.
Each split deals the people into three disjoint sets: a gallery of 200 (one template each, as in a
deduplicated watchlist), 250 calibration impostors and 250 held-back impostors. No one is in two
sets, so every search here is non-mated and every match is a false positive.

Three calibrations are checked, each turned into a threshold for the full gallery of 200:
- probes: the calibration impostors' rank-1 scores against the gallery;
- size extrapolation: the same impostors searched against half the gallery (100), the threshold
  for 200 derived by `threshold_for` (FPIR_200 = 1 - (1 - FPIR_100) ** 2);
- leave-one-out: each gallery template searched against the other 199.
The FPIR measured is the share of the 250 held-back impostors whose rank-1 score passes it.

Why these targets and sizes. A measured FPIR carries two binomial errors: the calibration quantile
(m searches) and the measurement (n searches); with m = n = 250 its relative standard deviation is
about sqrt(2 (1 - f) / (250 f)): 0.39 at f = 0.05, 0.27 at 0.1, 0.18 at 0.2. A factor of 2 (-50%)
is then 1.3, 1.9 and 2.8 standard deviations: only 0.2, and 0.1 for the direct calibration, are
robust on one split. Measured over 400 seeded re-splits of these 700 people before this test was
fixed, the share of splits outside a factor 2 was: probes 12.5% at 0.05, 1.5% at 0.1, 0% at 0.2;
extrapolation 17% at 0.1, 4% at 0.2 (it is biased strict, median ratio 0.8: real look-alikes are
not independent, and FPIR grows more slowly with size than the formula assumes; see
safepassage/matcher/calibration.py); leave-one-out 6% at 0.1, 0.5% at 0.2. So:
- one fixed split (seed 0, chosen before looking) must pass at 0.1 and 0.2 (probes) and at 0.2
  (extrapolation, leave-one-out);
- the lower targets 0.05 and 0.1 are checked on the FPIR pooled over 40 seeded splits (10,000
  held-back searches per figure), which averages the split-to-split noise away while every split
  still calibrates on people it then does not measure with.
Operational targets (1e-3 and below) need tens of thousands of impostor searches; the unit tests
(test_calibration.py) check the arithmetic there on synthetic scores. The protocol is
benchmarks/calibration_eval.py's, which saves these figures and their spread over 400 splits,
targets 0.003 and 0.01 included, in benchmarks/results/calibration.json.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.calibration_eval import (
    CALIBRATION,
    FIXED_SPLIT,
    GALLERY,
    PEOPLE,
    POOLED_SPLITS,
    SELECTION_SEED,
    Faces,
    best_scores,
    index_of,
    run_split,
)
from safepassage.matcher.calibration import calibrate_with_probes
from safepassage.matcher.errors import CalibrationUnavailable
from tests.lfw_embeddings import LfwEmbeddings


@pytest.fixture(scope="module")
def faces(lfw_embeddings: LfwEmbeddings) -> Faces:
    names = lfw_embeddings.identities()
    order = np.random.default_rng(SELECTION_SEED).permutation(len(names))[:PEOPLE]
    kept, vectors = lfw_embeddings.first_faces([names[i] for i in order])
    # A face is found in every one of these photos; a few misses would still leave the sets large.
    assert len(kept) >= PEOPLE - 10
    return Faces(kept, vectors, lfw_embeddings.metric)


def within_factor_2(measured: float, target: float) -> bool:
    return target / 2 <= measured <= target * 2


def test_measured_fpir_is_within_a_factor_of_2_of_the_target(faces: Faces, capsys) -> None:  # type: ignore[no-untyped-def]
    fixed = run_split(faces, FIXED_SPLIT, [0.05, 0.1, 0.2])
    pooled: dict[str, dict[float, list[int]]] = {}
    for seed in range(POOLED_SPLITS):
        for method, outcomes in run_split(faces, seed, [0.05, 0.1, 0.2]).items():
            for outcome in outcomes:
                counts = pooled.setdefault(method, {}).setdefault(outcome.target, [0, 0])
                counts[0] += outcome.false_positives
                counts[1] += outcome.searches
    report = {
        "fixed_split": {
            method: {
                str(o.target): {"threshold": round(o.threshold, 4), "measured_fpir": round(o.measured, 4)}
                for o in outcomes
            }
            for method, outcomes in fixed.items()
        },
        f"pooled_over_{POOLED_SPLITS}_splits": {
            method: {str(target): round(fp / n, 4) for target, (fp, n) in by_target.items()}
            for method, by_target in pooled.items()
        },
    }
    with capsys.disabled():
        print("\ncalibrated FPIR on real faces (target -> measured):", json.dumps(report, indent=2))

    # Observed (ONNX pipeline, L2): fixed split, target -> measured: probes 0.1 -> 0.064, 0.2 -> 0.14;
    # extrapolated 0.2 -> 0.108 (this split's held-back people are on the easy side: every method
    # measures low on it); leave-one-out 0.2 -> 0.132. Pooled over 40 splits: probes 0.0475, 0.0973,
    # 0.1938; extrapolated 0.0388, 0.0727, 0.1618; leave-one-out 0.0462, 0.0944, 0.1913.
    checked_on_one_split = {"probes": [0.1, 0.2], "extrapolated": [0.2], "leave_one_out": [0.2]}
    for method, targets in checked_on_one_split.items():
        for outcome in fixed[method]:
            if outcome.target in targets:
                assert within_factor_2(outcome.measured, outcome.target), (method, outcome)
    for method, by_target in pooled.items():
        for target, (false_positives, searches) in by_target.items():
            assert within_factor_2(false_positives / searches, target), (method, target, false_positives)


def test_a_threshold_is_stricter_for_a_larger_gallery(faces: Faces) -> None:
    """The same impostors give a stricter threshold for the same FPIR at twice the size, whose
    estimated FPIR there keeps to the target; a target below their resolution is refused."""
    order = np.random.default_rng(FIXED_SPLIT).permutation(len(faces.names))
    gallery_rows, calibration_rows = order[:GALLERY], order[GALLERY : GALLERY + CALIBRATION]
    half = calibrate_with_probes(
        best_scores(index_of(faces, gallery_rows[: GALLERY // 2]), faces, calibration_rows),
        faces.metric,
        GALLERY // 2,
    )
    at_half, at_full = half.threshold_for(0.2, GALLERY // 2), half.threshold_for(0.2, GALLERY)
    assert faces.metric.is_match(at_full, at_half) and at_full != at_half  # L2: smaller distance
    assert half.fpir_at(at_full, GALLERY) <= 0.2
    # 250 searches cannot resolve 0.1% at 200: the error says how many would.
    with pytest.raises(CalibrationUnavailable, match=r"needs at least 2000 impostor searches"):
        half.threshold_for(0.001, GALLERY)
