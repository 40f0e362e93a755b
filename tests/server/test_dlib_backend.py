"""The face_recognition (dlib) backend stays available as the reference, and its galleries
are interchangeable with the ONNX pipeline's: both embed into dlib-resnet-v1 space.

Admin enrols into the watchlist, an officer searches it; both servers share the session PKI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from safepassage.api.v1 import capture_pb2 as cpb
from safepassage.api.v1 import capture_pb2_grpc as cpb_grpc
from safepassage.api.v1 import matching_pb2 as pb

pytestmark = pytest.mark.server


def test_dlib_enrolment_is_found_by_the_onnx_pipeline(  # type: ignore[no-untyped-def]
    server_factory, clients_for, faces_dir: Path, tmp_path: Path
) -> None:
    fr = faces_dir / "face_recognition"
    data = tmp_path / "data"
    dlib_service, port, _ = server_factory(data, **{"faces.backend": "dlib"})
    with clients_for(port) as clients:
        assert (
            clients.admin.galleries.CreateGallery(
                pb.CreateGalleryRequest(gallery_id="ref", purpose=pb.WATCHLIST)
            ).model
            == "dlib-resnet-v1"
        )
        for reference, path in {
            "obama": fr / "obama" / "obama.jpg",
            "biden": fr / "biden" / "biden.jpg",
        }.items():
            clients.admin.matching.InsertTemplate(
                pb.InsertTemplateRequest(
                    gallery_id="ref", reference_id=reference, template=pb.Probe(image=path.read_bytes())
                )
            )
        verdict = clients.officer.matching.Verify(
            pb.VerifyRequest(
                gallery_id="ref",
                reference_id="obama",
                probe=pb.Probe(image=(fr / "obama" / "obama2.jpg").read_bytes()),
            )
        )
        assert verdict.decision == pb.MATCH
        # No five-point detector: the capture quality and head-turn checks say so, and do nothing.
        capture = cpb_grpc.CaptureServiceStub(clients.officer.channel)
        calls: list[Callable[[], object]] = [
            lambda: capture.AssessCapture(
                cpb.AssessCaptureRequest(image=(fr / "obama" / "obama.jpg").read_bytes())
            ),
            lambda: capture.StartLiveness(cpb.StartLivenessRequest()),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as refusal:
                call()
            assert refusal.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "ONNX face pipeline" in (refusal.value.details() or "")
    dlib_service.stop(grace_s=1)

    _, port, _ = server_factory(data)  # same data, the default ONNX backend
    with clients_for(port) as clients:
        matching = clients.officer.matching
        answer = matching.Identify(
            pb.IdentifyRequest(
                gallery_id="ref", probe=pb.Probe(image=(fr / "obama" / "obama2.jpg").read_bytes())
            )
        )
        assert answer.decision == pb.MATCH and answer.faces[0].candidates[0].reference_id == "obama"
        verdict = matching.Verify(
            pb.VerifyRequest(
                gallery_id="ref",
                reference_id="biden",
                probe=pb.Probe(image=(fr / "biden" / "biden2.jpg").read_bytes()),
            )
        )
        assert verdict.decision == pb.MATCH
