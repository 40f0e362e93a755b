"""Issue #7 through the real API: target-FPIR identification and calibration, thresholds that
follow a gallery's size, cancelable (protected) templates and their renewal, micro-batching."""

from __future__ import annotations

import threading

import grpc
import numpy as np
import numpy.typing as npt
import pytest

from safepassage.api.v1 import matching_pb2 as pb
from tests.conftest import Clients

pytestmark = pytest.mark.server
DIM = 128
Code = grpc.StatusCode


def vectors(count: int, seed: int) -> npt.NDArray[np.float32]:
    """Random directions scaled like dlib descriptors (norm about 1)."""
    rows = np.random.default_rng(seed).normal(size=(count, DIM))
    scaled: npt.NDArray[np.float32] = (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)
    return scaled


def probe(vector: npt.NDArray[np.float32]) -> pb.Probe:
    return pb.Probe(embedding=pb.Embedding(values=vector.tolist()))


def fill(
    clients: Clients, gallery: str, rows: npt.NDArray[np.float32], start: int = 0, **create: object
) -> None:
    if start == 0:
        clients.admin.galleries.CreateGallery(
            pb.CreateGalleryRequest(gallery_id=gallery, purpose=pb.WATCHLIST, **create)  # type: ignore[arg-type]
        )
    clients.admin.matching.BulkInsertTemplates(
        iter(
            pb.InsertTemplateRequest(gallery_id=gallery, reference_id=f"r{start + i}", template=probe(v))
            for i, v in enumerate(rows)
        )
    )


def identify(
    clients: Clients, gallery: str, vector: npt.NDArray[np.float32], **fields: object
) -> pb.IdentifyResponse:
    return clients.officer.matching.Identify(
        pb.IdentifyRequest(gallery_id=gallery, probe=probe(vector), **fields)  # type: ignore[arg-type]
    )


def code_of(call) -> tuple[Code, str]:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details() or ""


@pytest.fixture(scope="module")
def world(server_factory, clients_for):  # type: ignore[no-untyped-def]
    service, port, config = server_factory(**{"matching.batching.max_wait_ms": 20.0})
    return service, clients_for(port), config


def test_target_fpir_is_refused_until_the_gallery_is_calibrated(world) -> None:  # type: ignore[no-untyped-def]
    _, clients, _ = world
    # A loose fixed threshold (unit vectors lie about 1.4 apart), so that the FPIR's, stricter, may be
    # asked for: a request may only tighten the gallery's own threshold.
    fill(clients, "cal", vectors(300, 1), threshold=1.9)
    code, details = code_of(lambda: identify(clients, "cal", vectors(1, 2)[0], target_fpir=0.1))
    assert code == Code.FAILED_PRECONDITION and "not calibrated" in details
    gallery = clients.admin.galleries.CalibrateGallery(
        pb.CalibrateGalleryRequest(gallery_id="cal", impostors=[probe(v) for v in vectors(400, 3)])
    )
    assert (gallery.calibration.impostor_searches, gallery.calibration.gallery_size) == (400, 300)
    assert gallery.calibration.method == "probes" and not gallery.HasField("target_fpir")
    fixed = identify(clients, "cal", vectors(1, 2)[0])
    assert fixed.threshold_source == pb.GALLERY_THRESHOLD and not fixed.HasField("target_fpir")

    # Fresh impostors: about 10% of them match at the threshold for FPIR 0.1.
    answers = [identify(clients, "cal", v, target_fpir=0.1) for v in vectors(300, 4)]
    assert {a.threshold_source for a in answers} == {pb.TARGET_FPIR}
    assert {round(a.target_fpir, 6) for a in answers} == {0.1}
    assert len({a.threshold for a in answers}) == 1
    fpir = np.mean([a.decision == pb.MATCH for a in answers])
    assert 0.05 <= fpir <= 0.2, fpir


@pytest.mark.parametrize(
    ("fields", "expected", "words"),
    [
        ({"target_fpir": 0.1, "threshold": 0.5}, Code.INVALID_ARGUMENT, "not both"),
        ({"target_fpir": 0.0}, Code.INVALID_ARGUMENT, "(0, 1)"),
        ({"target_fpir": 1.5}, Code.INVALID_ARGUMENT, "(0, 1)"),
        ({"target_fpir": float("nan")}, Code.INVALID_ARGUMENT, "(0, 1)"),
        ({"target_fpir": 0.0005}, Code.FAILED_PRECONDITION, "impostor searches"),
    ],
)
def test_bad_target_fpirs_say_what_is_wrong(  # type: ignore[no-untyped-def]
    world, fields: dict[str, float], expected: Code, words: str
) -> None:
    _, clients, _ = world
    code, details = code_of(lambda: identify(clients, "cal", vectors(1, 5)[0], **fields))
    assert code == expected and words in details, details


def test_calibration_requests_are_checked(world) -> None:  # type: ignore[no-untyped-def]
    _, clients, _ = world
    before = clients.admin.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id="cal"))
    g = clients.admin.galleries
    for request in (
        pb.CalibrateGalleryRequest(gallery_id="cal"),
        pb.CalibrateGalleryRequest(gallery_id="cal", leave_one_out=10, impostors=[probe(vectors(1, 6)[0])]),
        pb.CalibrateGalleryRequest(gallery_id="cal", leave_one_out=10, target_fpir=2.0),
        pb.CalibrateGalleryRequest(
            gallery_id="cal", impostors=[pb.Probe(embedding=pb.Embedding(values=[1.0]))]
        ),
    ):
        assert code_of(lambda: g.CalibrateGallery(request))[0] == Code.INVALID_ARGUMENT  # noqa: B023
    assert (
        code_of(lambda: g.CalibrateGallery(pb.CalibrateGalleryRequest(gallery_id="nope", leave_one_out=5)))[0]
        == Code.NOT_FOUND
    )
    assert clients.admin.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id="cal")) == before


def test_a_gallery_threshold_follows_its_target_fpir_as_it_grows(world) -> None:  # type: ignore[no-untyped-def]
    _, clients, _ = world
    fill(clients, "grow", vectors(400, 7))
    gallery = clients.admin.galleries.CalibrateGallery(
        pb.CalibrateGalleryRequest(gallery_id="grow", leave_one_out=400, target_fpir=0.05)
    )
    assert gallery.calibration.method == "leave_one_out" and gallery.calibration.gallery_size == 399
    assert round(gallery.target_fpir, 6) == 0.05
    first = gallery.threshold
    answer = identify(clients, "grow", vectors(1, 8)[0])
    assert answer.threshold_source == pb.TARGET_FPIR and answer.threshold == pytest.approx(first)
    fill(clients, "grow", vectors(400, 9), start=400)
    grown = clients.admin.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id="grow"))
    assert grown.size == 800 and grown.threshold < first  # L2: stricter for a larger gallery
    assert identify(clients, "grow", vectors(1, 8)[0]).threshold == pytest.approx(grown.threshold)


def test_protected_templates_rank_and_score_as_plain_ones_and_renew(world) -> None:  # type: ignore[no-untyped-def]
    service, clients, _ = world
    rows, probes = vectors(200, 10), vectors(20, 11)
    probes[:10] = rows[:10] + 0.05 * vectors(10, 12)  # mated probes
    fill(clients, "plain", rows)
    fill(clients, "prot", rows, protect_templates=True)
    described = clients.admin.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id="prot"))
    assert described.protection_version >= 1
    # What the store holds is not the raw template, but is as long.
    _, stored = service.template_store.templates.get("prot", "r0")
    assert not np.allclose(stored, rows[0], atol=1e-3)
    assert np.linalg.norm(stored) == pytest.approx(np.linalg.norm(rows[0]), abs=1e-5)

    def ranked(gallery: str) -> list[list[tuple[str, float]]]:
        return [
            [(c.reference_id, c.score) for c in identify(clients, gallery, p, top_k=10).faces[0].candidates]
            for p in probes
        ]

    plain = ranked("plain")

    def same(got: list[list[tuple[str, float]]]) -> None:
        for mine, theirs in zip(got, plain, strict=True):
            assert [r for r, _ in mine] == [r for r, _ in theirs]
            assert np.allclose([s for _, s in mine], [s for _, s in theirs], atol=1e-5)

    same(ranked("prot"))
    renewed = clients.admin.galleries.RenewTemplateProtection(pb.RenewTemplateProtectionRequest())
    assert renewed.protection_version == described.protection_version + 1
    assert "prot" in renewed.galleries and "plain" not in renewed.galleries
    assert renewed.templates_rewritten >= 200
    _, restored = service.template_store.templates.get("prot", "r0")
    assert not np.allclose(restored, stored, atol=1e-3)
    same(ranked("prot"))
    keyring = service.matcher._templates.keyring
    assert described.protection_version in keyring.destroyed_versions()
    verified = clients.officer.matching.Verify(
        pb.VerifyRequest(gallery_id="prot", reference_id="r3", probe=probe(rows[3]))
    )
    assert verified.decision == pb.MATCH and verified.score == pytest.approx(0.0, abs=1e-5)


def test_concurrent_identifications_get_unchanged_answers_batched_or_alone(world) -> None:  # type: ignore[no-untyped-def]
    service, clients, _ = world
    fill(clients, "busy", vectors(2000, 13))
    probes = vectors(64, 14)
    expected = [identify(clients, "busy", p, top_k=5) for p in probes]
    before = service.matcher.batch_stats()
    answers: list[pb.IdentifyResponse | None] = [None] * len(probes)
    start = threading.Barrier(16)

    def worker(offset: int) -> None:
        start.wait()
        for i in range(offset, len(probes), 16):
            answers[i] = identify(clients, "busy", probes[i], top_k=5)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for got, want in zip(answers, expected, strict=True):
        assert got is not None
        assert [c.reference_id for c in got.faces[0].candidates] == [
            c.reference_id for c in want.faces[0].candidates
        ]
        assert np.allclose(
            [c.score for c in got.faces[0].candidates], [c.score for c in want.faces[0].candidates], atol=1e-4
        )
    after = service.matcher.batch_stats()
    # Every probe searched once, whether alone (nothing else running) or in a batch: how many
    # overlapped depends on the machine's pace, so batch formation is tested where it can be
    # held still (tests/matcher/test_batcher.py).
    assert after.queries - before.queries == len(probes)


def test_calibration_and_protection_survive_a_restart(server_factory, clients_for) -> None:  # type: ignore[no-untyped-def]
    service, port, config = server_factory()
    clients = clients_for(port)
    rows = vectors(300, 20)
    fill(clients, "kept", rows, protect_templates=True)
    clients.admin.galleries.CalibrateGallery(
        pb.CalibrateGalleryRequest(gallery_id="kept", leave_one_out=300, target_fpir=0.1)
    )
    before = clients.admin.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id="kept"))
    answer = identify(clients, "kept", rows[7])
    service.stop(grace_s=1)
    _, port, _ = server_factory(data_dir=config.storage.data_dir)
    clients = clients_for(port)
    after = clients.admin.galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id="kept"))
    assert after == before
    assert identify(clients, "kept", rows[7]) == answer
