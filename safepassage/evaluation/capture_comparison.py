"""One photo per person, or several: the same people and the same searches, enrolled both ways.

People with three or more images are enrolled with all but their last image (the first inserted, the
others added as captures: the matcher searches their mean template, safepassage.matcher.fusion) or
with the first alone, and searched with their last image. Strangers and distractors are those of the
main protocol (make_protocol: the single-image people), so the two rows differ only in enrolment.
Both run through the real matcher on a temporary store (identification.identify).
"""

from __future__ import annotations

from safepassage.evaluation import metrics
from safepassage.evaluation.data import LabelledSet
from safepassage.evaluation.embed import Embeddings
from safepassage.evaluation.identification import IdentificationProtocol, identify, make_protocol
from safepassage.evaluation.points import identification_point, open_set
from safepassage.evaluation.report import CaptureEnrolment

__all__ = ["CAPTURE_FPIR_TARGETS", "capture_protocols", "compare_captures"]

CAPTURE_FPIR_TARGETS = (0.01, 0.003)
_MIN_IMAGES = 3


def capture_protocols(
    labelled: LabelledSet, seed: int, nonmated_share: float
) -> tuple[IdentificationProtocol, IdentificationProtocol] | None:
    """(one capture, several captures) over the same people and searches; None with no one to search."""
    base = make_protocol(labelled, seed, nonmated_share)
    people = labelled.identities
    names = [name for name in base.enrolled if len(people[name]) >= _MIN_IMAGES]
    if not names:
        return None
    mated = tuple((name, people[name][-1]) for name in names)
    one = IdentificationProtocol(
        enrolled={name: people[name][0] for name in names},
        mated_probes=mated,
        nonmated_probes=base.nonmated_probes,
        distractors=base.distractors,
    )
    several = IdentificationProtocol(
        enrolled=one.enrolled,
        mated_probes=mated,
        nonmated_probes=base.nonmated_probes,
        distractors=base.distractors,
        captures={name: tuple(people[name][1:-1]) for name in names},
    )
    return one, several


def compare_captures(
    labelled: LabelledSet, embeddings: Embeddings, seed: int, nonmated_share: float
) -> tuple[CaptureEnrolment, ...]:
    """Both enrolments, with every real distractor in the gallery; empty when no one has 3+ images."""
    protocols = capture_protocols(labelled, seed, nonmated_share)
    if protocols is None:
        return ()
    rows = []
    for label, protocol in zip(("one capture", "all but the last image"), protocols, strict=True):
        (run,) = identify(embeddings, protocol, [len(protocol.enrolled) + len(protocol.distractors)])
        scores = open_set(run)
        rows.append(
            CaptureEnrolment(
                enrolment=label,
                subjects=len(protocol.enrolled),
                captures=len(protocol.enrolled) + sum(len(c) for c in protocol.captures.values()),
                gallery_size=run.gallery_size,
                mated_searches=len(run.mated),
                nonmated_searches=len(run.nonmated),
                rank1=metrics.rank_rate(scores, 1),
                fpir_points=tuple(
                    identification_point(metrics.fnir_at_fpir(scores, target))
                    for target in CAPTURE_FPIR_TARGETS
                ),
            )
        )
    return tuple(rows)
