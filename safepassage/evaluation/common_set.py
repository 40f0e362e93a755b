"""Like for like: each pipeline's figures on the photos every pipeline of the run found a face in.

Side by side, per-comparison figures of two pipelines rest on different photos when one finds no face
in photos the other copes with (on one held-out source one pipeline kept 3,459 genuine pairs, the other
4,180): the hard photos drop out of the weaker one's figures. Beside the whole-system figures
(acquisition.py), the report therefore scores every pipeline again on the same photos: the
intersection of the photos each acquired, the same pairs, the same gallery and the same searches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from safepassage.evaluation import metrics
from safepassage.evaluation.breakdown import comparisons
from safepassage.evaluation.data import LabelledSet
from safepassage.evaluation.embed import Embeddings
from safepassage.evaluation.identification import IdentificationProtocol, identify
from safepassage.evaluation.points import identification_point, open_set, verification_point
from safepassage.evaluation.report import IdentificationPoint, SameImageFigures


def acquired_by_every(embedded: Mapping[str, Embeddings], images: Sequence[Path]) -> frozenset[Path]:
    """The photos of ``images`` in which every pipeline found a face."""
    return frozenset(p for p in images if all(e.vector(p) is not None for e in embedded.values()))


def restricted(embeddings: Embeddings, keep: frozenset[Path]) -> Embeddings:
    """``embeddings`` with every photo outside ``keep`` treated as one without a face."""
    return Embeddings(
        embeddings.pipeline,
        embeddings.model,
        {
            path: item if path in keep else dataclasses.replace(item, vector=None)
            for path, item in embeddings.by_path.items()
        },
        embeddings.embedded_now,
    )


def same_image_figures(
    labelled: LabelledSet,
    protocol: IdentificationProtocol,
    embeddings: Embeddings,
    keep: frozenset[Path],
    pipelines: Sequence[str],
    fmr_targets: Sequence[float],
    fpir_targets: Sequence[float],
) -> SameImageFigures | None:
    """``embeddings``' figures on the photos of ``keep`` alone; None when they hold no genuine or no
    impostor pair."""
    if not keep:
        return None
    only = restricted(embeddings, keep)
    comp = comparisons(labelled, only)
    if len(comp.genuine) == 0 or len(comp.impostor) == 0:
        return None
    scores = metrics.VerificationScores(comp.genuine, comp.impostor, embeddings.higher_is_closer)
    eer, _ = metrics.eer(scores)
    enrolled = [p for p in protocol.enrolled.values() if p in keep]
    distractors = [p for _, p in protocol.distractors if p in keep]
    mated = nonmated = rank1_hits = 0
    fpir_points: tuple[IdentificationPoint, ...] = ()
    gallery = len(enrolled) + len(distractors)
    if enrolled:
        (run,) = identify(only, protocol, [gallery])
        # Only the searches every pipeline could make: the others are the same for all, and no figure.
        searched = dataclasses.replace(
            run,
            mated=tuple(s for s in run.mated if s.face_found and s.identity not in run.enrolment_failures),
            nonmated=tuple(s for s in run.nonmated if s.face_found),
        )
        mated, nonmated = len(searched.mated), len(searched.nonmated)
        if mated and nonmated:
            open_scores = open_set(searched)
            rank1_hits = round(metrics.rank_rate(open_scores, 1) * mated)
            fpir_points = tuple(
                identification_point(metrics.fnir_at_fpir(open_scores, t)) for t in fpir_targets
            )
    return SameImageFigures(
        pipelines=tuple(pipelines),
        images=len(keep),
        of_images=len(labelled.images()),
        genuine_comparisons=len(comp.genuine),
        impostor_comparisons=len(comp.impostor),
        eer=eer,
        eer_false_non_matches=round(eer * len(comp.genuine)),
        fmr_points=tuple(verification_point(metrics.fnmr_at_fmr(scores, t)) for t in fmr_targets),
        enrolled=gallery,
        mated_searches=mated,
        nonmated_searches=nonmated,
        rank1_hits=rank1_hits,
        fpir_points=fpir_points,
    )
