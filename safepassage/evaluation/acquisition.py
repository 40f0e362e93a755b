"""Failures to acquire, and the error rates that count them (ISO/IEC 19795-1 whole-system figures).

A photo in which a pipeline finds no face gives no template: a failure to acquire (FTA). Per-comparison
rates (FNMR, FMR over the pairs with both templates; FNIR, FPIR over the searches that could run) leave
such photos out, so a pipeline that fails on the hard photos is scored on the easy ones and can look
better than one that copes with them. The whole-system rates put every attempt back:

- 1:1, pair by pair (ISO/IEC 19795-1 generalised rates): a pair with a failure to acquire is a
  non-match, a false non-match when genuine and a correct rejection when impostor. With FTA here the
  share of pairs with a failure, GFNMR = FTA + FNMR (1 - FTA) and GFMR = FMR (1 - FTA), read at the
  per-comparison point's threshold.
- 1:N: a mated search whose probe has no face, or whose person could not be enrolled, is a miss; a
  non-mated search without a face raises no alarm (identification.py; these are the headline figures).
  The per-search figures beside them count only the searches the pipeline could make.
"""

from __future__ import annotations

from safepassage.evaluation.breakdown import Comparisons
from safepassage.evaluation.identification import GalleryRun
from safepassage.evaluation.points import ci95
from safepassage.evaluation.report import (
    GeneralisedPoint,
    IdentificationPoint,
    PerSearchPoint,
    VerificationPoint,
)


def generalised_point(point: VerificationPoint, comp: Comparisons) -> GeneralisedPoint:
    """The whole-system rates at ``point``'s threshold: every pair of ``comp`` counted."""
    misses = point.false_non_matches + comp.genuine_failed
    return GeneralisedPoint(
        target_fmr=point.target_fmr,
        threshold=point.threshold,
        gfnmr=misses / comp.genuine_all if comp.genuine_all else float("nan"),
        false_non_matches=misses,
        genuine_pairs=comp.genuine_all,
        gfnmr_ci95=ci95(misses, comp.genuine_all),
        gfmr=point.false_matches / comp.impostor_all if comp.impostor_all else float("nan"),
        false_matches=point.false_matches,
        impostor_pairs=comp.impostor_all,
        gfmr_ci95=ci95(point.false_matches, comp.impostor_all),
    )


def per_search_point(point: IdentificationPoint, run: GalleryRun) -> PerSearchPoint:
    """The 1:N rates at ``point``'s threshold over the searches ``run``'s pipeline could make."""
    not_enrolled = set(run.enrolment_failures)
    mated = [s for s in run.mated if s.face_found and s.identity not in not_enrolled]
    nonmated = [s for s in run.nonmated if s.face_found]

    def passes(score: float) -> bool:  # breakdown.accepted, for one score
        return score >= point.threshold if run.higher_is_closer else score <= point.threshold

    misses = sum(1 for s in mated if not (s.rank_of_true() == 1 and passes(s.scores[0])))
    alarms = sum(1 for s in nonmated if s.scores and passes(s.scores[0]))
    return PerSearchPoint(
        target_fpir=point.target_fpir,
        threshold=point.threshold,
        fnir=misses / len(mated) if mated else float("nan"),
        misses=misses,
        mated_searches=len(mated),
        fnir_ci95=ci95(misses, len(mated)),
        fpir=alarms / len(nonmated) if nonmated else float("nan"),
        false_positives=alarms,
        nonmated_searches=len(nonmated),
        fpir_ci95=ci95(alarms, len(nonmated)),
    )
