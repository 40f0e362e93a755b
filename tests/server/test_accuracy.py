"""Identification accuracy of the whole service on real faces, through the real API.

Protocol (per labelled source; labels are comparable only within a source):
identities with two or more images are enrolled with their first image (in
name order); their other images are mated probes. Identities with one image
are never enrolled: they are non-mated probes, and any MATCH for them is a
false match. Reported: rank-1 identification rate, FNIR and FPIR at the
gallery threshold (0.6, dlib's default), and FPIR at a stricter 0.5.
Admin creates the watchlist and enrols; an officer makes the searches.
The protocol lives in benchmarks/accuracy_eval.py, which saves the figures
(benchmarks/results/accuracy.json); this test asserts floors on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.accuracy_eval import measure
from tests.conftest import Clients

pytestmark = pytest.mark.server


def evaluate(clients: Clients, name: str, root: Path) -> dict[str, float]:
    """The protocol of benchmarks/accuracy_eval.py (which saves its figures as JSON), as rates."""
    return measure(
        clients.admin.galleries, clients.admin.matching, clients.officer.matching, name, root
    ).rates()


def test_identification_accuracy_on_real_faces(server_factory, clients_for, faces_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    _, port, _ = server_factory()
    with clients_for(port) as clients:
        lfw = evaluate(clients, "lfw", faces_dir / "lfw")
        fr = evaluate(clients, "face-recognition", faces_dir / "face_recognition")
    with capsys.disabled():
        print("\nidentification accuracy:", json.dumps({"lfw": lfw, "face_recognition": fr}, indent=2))
    # Floors a broken pipeline could not reach (random embeddings give rank-1 ~ 1/300);
    # measured (ONNX pipeline): rank-1 0.934, rank-10 0.985, FNIR 0.038 / FPIR 0.611 at 0.6,
    # FPIR 0.043 at 0.5.
    assert lfw["identities_enrolled"] >= 295 and lfw["mated_searches"] >= 900
    assert lfw["nonmated_searches"] >= 500
    assert lfw["rank1_rate"] >= 0.90
    assert lfw["rank10_rate"] >= 0.96
    assert lfw["fnir_at_0.6"] <= 0.06
    assert lfw["fpir_at_0.5"] <= 0.10
    assert fr["rank1_rate"] >= 0.9 and fr["identities_enrolled"] == 5  # lin_manuel_miranda has one image
