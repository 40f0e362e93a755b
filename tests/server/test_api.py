"""The API end to end against a real server over mutual TLS, with embedding probes.

Each call is made by a role the authorisation matrix allows: admin creates
galleries and enrols into watchlists, an officer searches them, and an NGO
caseworker enrols into a PROTECTED_IDENTITY gallery."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from safepassage.api.v1 import matching_pb2 as pb

pytestmark = pytest.mark.server
DIM = 128


def emb(vector: np.ndarray) -> pb.Probe:
    return pb.Probe(embedding=pb.Embedding(values=vector.tolist()))


@pytest.fixture(scope="module")
def api(server_factory, clients_for):  # type: ignore[no-untyped-def]
    service, port, _ = server_factory()
    clients = clients_for(port)
    clients.service = service
    return clients


def test_health_and_reflection_over_tls(api) -> None:  # type: ignore[no-untyped-def]
    channel = api.officer.channel  # open to every authenticated client
    status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    service = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="safepassage.v1.MatchingService"), timeout=5
    )
    assert service.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answer = next(
        iter(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    )
    names = {s.name for s in answer.list_services_response.service}
    assert {
        "safepassage.v1.GalleryService",
        "safepassage.v1.MatchingService",
        "grpc.health.v1.Health",
    } <= names


def test_gallery_lifecycle(api) -> None:  # type: ignore[no-untyped-def]
    galleries = api.admin.galleries
    created = galleries.CreateGallery(
        pb.CreateGalleryRequest(gallery_id="life", purpose=pb.PROTECTED_IDENTITY)
    )
    assert (created.purpose, created.dimension, created.metric, created.size) == (
        pb.PROTECTED_IDENTITY,
        DIM,
        pb.L2,
        0,
    )
    assert created.threshold == pytest.approx(0.6) and created.model == "dlib-resnet-v1"
    custom = galleries.CreateGallery(
        pb.CreateGalleryRequest(gallery_id="life-2", purpose=pb.WATCHLIST, threshold=0.5)
    )
    assert custom.threshold == pytest.approx(0.5)
    listed = {g.gallery_id for g in galleries.ListGalleries(pb.ListGalleriesRequest()).galleries}
    assert {"life", "life-2"} <= listed
    # Protected templates enter only through EnrolRecord (with consent): no role may insert them here.
    for stubs in (api.ngo, api.admin):
        with pytest.raises(grpc.RpcError) as refused:
            stubs.matching.InsertTemplate(
                pb.InsertTemplateRequest(gallery_id="life", reference_id="r1", template=emb(np.ones(DIM)))
            )
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    api.service.matcher.insert("life", "r1", np.full(DIM, 0.05))
    assert galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id="life")).size == 1
    assert galleries.DeleteGallery(pb.DeleteGalleryRequest(gallery_id="life")).templates_erased == 1
    with pytest.raises(grpc.RpcError) as info:
        galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id="life"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_insert_identify_verify_delete(api) -> None:  # type: ignore[no-untyped-def]
    admin, officer = api.admin, api.officer
    admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="core", purpose=pb.WATCHLIST))
    rng = np.random.default_rng(1)
    vectors = rng.normal(scale=0.1, size=(50, DIM)).astype(np.float32)
    for i, v in enumerate(vectors):
        admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id="core", reference_id=f"p{i}", template=emb(v))
        )
    assert admin.matching.CountTemplates(pb.CountTemplatesRequest(gallery_id="core")).count == 50

    probe = vectors[7] + 0.001
    answer = officer.matching.Identify(
        pb.IdentifyRequest(gallery_id="core", probe=emb(probe), top_k=3, request_id="q1")
    )
    assert answer.request_id == "q1" and answer.decision == pb.MATCH and len(answer.faces) == 1
    face = answer.faces[0]
    assert not face.HasField("box")
    assert [c.rank for c in face.candidates] == [1, 2, 3]
    assert face.candidates[0].reference_id == "p7" and face.candidates[0].match
    assert face.candidates[0].score < face.candidates[1].score

    # Open set: a stranger is a real "no match", still with ranked candidates.
    stranger = rng.normal(scale=0.1, size=DIM).astype(np.float32) + 5
    answer = officer.matching.Identify(pb.IdentifyRequest(gallery_id="core", probe=emb(stranger)))
    assert answer.decision == pb.NO_MATCH and len(answer.faces[0].candidates) == 5
    assert not any(c.match for c in answer.faces[0].candidates)

    # 1:few: only the listed references are searched.
    answer = officer.matching.Identify(
        pb.IdentifyRequest(gallery_id="core", probe=emb(probe), restrict_to=["p1", "p2"])
    )
    assert {c.reference_id for c in answer.faces[0].candidates} == {"p1", "p2"}
    assert answer.decision == pb.NO_MATCH
    # An unknown reference is NOT_FOUND, as Verify says, not a NO_MATCH as if it had been searched.
    with pytest.raises(grpc.RpcError) as unknown:
        officer.matching.Identify(
            pb.IdentifyRequest(gallery_id="core", probe=emb(probe), restrict_to=["p7", "nobody", "none"])
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert "2 of the 3 restrict_to references" in (unknown.value.details() or "")

    # A call's own threshold overrides the gallery's.
    strict = officer.matching.Identify(pb.IdentifyRequest(gallery_id="core", probe=emb(probe), threshold=0.0))
    assert strict.threshold == 0.0 and strict.decision == pb.NO_MATCH

    verified = officer.matching.Verify(
        pb.VerifyRequest(gallery_id="core", reference_id="p7", probe=emb(probe))
    )
    assert verified.decision == pb.MATCH and verified.score == pytest.approx(
        np.linalg.norm(probe - vectors[7]), abs=1e-4
    )
    other = officer.matching.Verify(
        pb.VerifyRequest(gallery_id="core", reference_id="p8", probe=emb(stranger))
    )
    assert other.decision == pb.NO_MATCH

    admin.matching.DeleteTemplate(pb.DeleteTemplateRequest(gallery_id="core", reference_id="p7"))
    answer = officer.matching.Identify(pb.IdentifyRequest(gallery_id="core", probe=emb(probe)))
    assert "p7" not in {c.reference_id for c in answer.faces[0].candidates}
    assert admin.matching.CountTemplates(pb.CountTemplatesRequest(gallery_id="core")).count == 49


def test_a_watchlist_never_takes_the_1to1_threshold(api) -> None:  # type: ignore[no-untyped-def]
    galleries, rng = api.admin.galleries, np.random.default_rng(3)
    protected = galleries.CreateGallery(
        pb.CreateGalleryRequest(gallery_id="origin-p", purpose=pb.PROTECTED_IDENTITY)
    )
    assert protected.threshold == pytest.approx(0.6) and protected.threshold_origin == pb.MODEL_DEFAULT
    watch = galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="origin-w", purpose=pb.WATCHLIST))
    # The model's watchlist default, and the FPIR it implies from the model's measured FMR (2.7e-4).
    assert watch.threshold == pytest.approx(0.5) and watch.threshold_origin == pb.WATCHLIST_DEFAULT
    assert watch.implied_fpir_basis == "model evidence" and watch.implied_fpir == pytest.approx(2.7e-4)
    own = galleries.CreateGallery(
        pb.CreateGalleryRequest(gallery_id="origin-a", purpose=pb.WATCHLIST, threshold=0.42)
    )
    assert own.threshold_origin == pb.SET_BY_ADMIN and not own.HasField("implied_fpir")
    for i, v in enumerate(rng.normal(scale=0.1, size=(20, DIM))):
        api.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id="origin-w", reference_id=f"w{i}", template=emb(v))
        )
    described = galleries.DescribeGallery(pb.DescribeGalleryRequest(gallery_id="origin-w"))
    assert described.implied_fpir == pytest.approx(1 - (1 - 2.7e-4) ** 20)
    answer = api.officer.matching.Identify(
        pb.IdentifyRequest(gallery_id="origin-w", probe=emb(rng.normal(scale=0.1, size=DIM)))
    )
    assert answer.threshold_source == pb.GALLERY_THRESHOLD
    assert answer.gallery_threshold_origin == pb.WATCHLIST_DEFAULT
    impostors = [emb(v) for v in rng.normal(scale=0.1, size=(50, DIM))]
    calibrated = galleries.CalibrateGallery(
        pb.CalibrateGalleryRequest(gallery_id="origin-w", impostors=impostors, target_fpir=0.1)
    )
    assert calibrated.threshold_origin == pb.CALIBRATED and calibrated.implied_fpir_basis == "calibration"
    assert calibrated.HasField("implied_fpir") and calibrated.implied_fpir <= 0.1


def test_bulk_insert_reports_each_failure(api) -> None:  # type: ignore[no-untyped-def]
    galleries, matching = api.admin.galleries, api.admin.matching
    galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="bulk", purpose=pb.WATCHLIST))
    rng = np.random.default_rng(2)
    items = [
        pb.InsertTemplateRequest(
            gallery_id="bulk", reference_id=f"b{i}", template=emb(rng.normal(scale=0.1, size=DIM))
        )
        for i in range(2500)
    ]
    items[10].reference_id = "b0"  # duplicate of an earlier item
    items[20].template.embedding.values[:] = [1.0, 2.0]  # wrong dimension
    items[30].gallery_id = "no-such-gallery"
    answer = matching.BulkInsertTemplates(iter(items))
    assert (answer.inserted, answer.failed) == (2497, 3)
    by_index = {e.index: e for e in answer.errors}
    assert by_index[10].code == grpc.StatusCode.ALREADY_EXISTS.value[0] and "b0" in by_index[10].message
    assert by_index[20].code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert by_index[30].code == grpc.StatusCode.NOT_FOUND.value[0]
    assert matching.CountTemplates(pb.CountTemplatesRequest(gallery_id="bulk")).count == 2497


def test_identify_stream_answers_each_request(api) -> None:  # type: ignore[no-untyped-def]
    admin = api.admin
    admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="stream", purpose=pb.WATCHLIST))
    rng = np.random.default_rng(3)
    vectors = rng.normal(scale=0.1, size=(20, DIM)).astype(np.float32)
    for i, v in enumerate(vectors):
        admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(gallery_id="stream", reference_id=f"s{i}", template=emb(v))
        )
    requests = [
        pb.IdentifyRequest(gallery_id="stream", probe=emb(v), request_id=f"q{i}")
        for i, v in enumerate(vectors)
    ]
    requests.insert(5, pb.IdentifyRequest(gallery_id="stream", probe=emb(np.ones(3)), request_id="bad"))
    answers = list(api.officer.matching.IdentifyStream(iter(requests)))
    assert [a.request_id for a in answers] == [r.request_id for r in requests]
    bad = answers[5]
    assert (
        bad.WhichOneof("outcome") == "error" and bad.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    )
    assert "3 values" in bad.error.message
    good = [a for a in answers if a.request_id != "bad"]
    assert all(a.result.faces[0].candidates[0].reference_id == f"s{i}" for i, a in enumerate(good))
