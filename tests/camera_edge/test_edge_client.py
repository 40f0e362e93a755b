"""The CCTV edge client against a real server over mutual TLS, on the sample videos.

The people of a clip are enrolled in a watchlist with LFW distractors; the
client processes the clip (capture -> tracking -> outbox -> identify stream)
and must identify them, with about one query per person.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.camera_edge.client import AUTHORISATION_METADATA_KEY, EdgeClient, TrackResult
from safepassage.camera_edge.config import load_edge_config
from safepassage.camera_edge.edge_loop import EdgeLoop, LoopSettings
from safepassage.camera_edge.errors import CredentialsError, SourceUnavailable
from safepassage.camera_edge.sources import Frame
from safepassage.camera_edge.tracking import ReadyTrack
from safepassage.face.pipeline import FacePipeline, PipelineSettings, load_pipeline
from safepassage.server.cctv_authorisation import METADATA_KEY, sign
from safepassage.server.identity import Role
from tests.pki_helpers import RolePki, foreign_cert

pytestmark = pytest.mark.server
GALLERY = "cams"
DISTRACTORS = 120
INTEL = "intel_sample_videos/mp4_from_gif"


def test_the_edge_sends_the_servers_authorisation_key() -> None:
    assert AUTHORISATION_METADATA_KEY == METADATA_KEY


@pytest.fixture(scope="module")
def pipeline(model_dir: Path) -> FacePipeline:
    return load_pipeline(PipelineSettings(model_dir=model_dir))


def embedding_probe(vector: np.ndarray) -> pb.Probe:
    return pb.Probe(embedding=pb.Embedding(values=[float(v) for v in vector]))


@pytest.fixture(scope="module")
def watchlist(server_factory, clients_for, faces_dir: Path):  # type: ignore[no-untyped-def]
    """Lin-Manuel Miranda, Barack Obama and LFW distractors (images, embedded by the server)."""
    _, port, _ = server_factory()
    clients = clients_for(port)
    # The 1:1 threshold (0.6) lets one poor CCTV face in two match some distractor: a watchlist is
    # created, as the README's Edge example does, with the model's stricter watchlist default.
    created = clients.admin.galleries.CreateGallery(
        pb.CreateGalleryRequest(gallery_id=GALLERY, purpose=pb.WATCHLIST)
    )
    assert created.threshold_origin == pb.WATCHLIST_DEFAULT and created.threshold < 0.6
    people = {
        "lin-manuel-miranda": faces_dir / "face_recognition/lin_manuel_miranda/lin-manuel-miranda.png",
        "obama": faces_dir / "face_recognition/obama/obama.jpg",
    }
    lfw = sorted(p for p in (faces_dir / "lfw").iterdir() if p.is_dir())[:DISTRACTORS]
    people.update({f"lfw-{folder.name.lower()}": sorted(folder.glob("*.jpg"))[0] for folder in lfw})
    for reference, image in people.items():
        clients.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(
                gallery_id=GALLERY,
                reference_id=reference,
                template=pb.Probe(image=image.read_bytes()),
                face_selection=pb.LARGEST,
            )
        )
    return port, clients


def write_camera(tmp: Path, port: int, pki: RolePki, source: Path, **extra: str) -> Path:
    """A camera's TOML file with its certificate, key and a signed authorisation for cam-1."""
    camera = pki.clients[Role.CCTV_EDGE]
    admin = pki.clients[Role.ADMIN]
    (tmp / "cam.pem").write_bytes(camera.cert_pem)
    (tmp / "cam-key.pem").write_bytes(camera.key_pem)
    (tmp / "cam-key.pem").chmod(0o600)  # a device key others may read is refused
    token = sign(
        gallery_id=GALLERY,
        cameras=["cam-1"],
        legal_basis="Order 2026/114 of the border court",
        valid_for_s=3600,
        admin_cert=x509.load_pem_x509_certificate(admin.cert_pem),
        admin_key=load_pem_private_key(admin.key_pem, None),  # type: ignore[arg-type]
    )
    (tmp / "cam.authorisation").write_text(token)
    server = {
        "address": f"'localhost:{port}'",
        "gallery_id": f"'{GALLERY}'",
        "ca": f"'{pki.ca_file}'",
        "cert": "'cam.pem'",
        "key": "'cam-key.pem'",
        "authorisation": "'cam.authorisation'",
        **extra,
    }
    path = tmp / "camera.toml"
    path.write_text(
        "camera_id = 'cam-1'\n[source]\n"
        f"location = '{source}'\npace = 'asap'\n"
        "[server]\n"
        + "".join(f"{k} = {v}\n" for k, v in server.items())
        + "[queue]\npath = 'outbox.sqlite3'\n"
        "key_file = 'device.key'\n"
    )
    return path


def run_client(config_path: Path, pipeline: FacePipeline) -> tuple[Any, list[TrackResult]]:
    results: list[TrackResult] = []
    client = EdgeClient(load_edge_config(config_path), pipeline=pipeline, on_result=results.append)
    try:
        summary = client.run(drain_timeout_s=60)
    finally:
        client.close()
    return summary, results


def test_the_hamilton_clip_identifies_lin_manuel_miranda(  # type: ignore[no-untyped-def]
    watchlist,
    role_pki: RolePki,
    pipeline: FacePipeline,
    faces_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    port, _ = watchlist
    clip = faces_dir / "video/face_recognition/short_hamilton_clip.mp4"
    summary, results = run_client(write_camera(tmp_path, port, role_pki, clip), pipeline)
    print("\nhamilton:", *summary.lines(), *(r.line() for r in results), sep="\n  ")
    assert summary.frames_read == summary.frames_processed == 275
    assert summary.still_queued == 0 and summary.answered == summary.queries == len(results)
    matched = [r for r in results if r.decision == "MATCH"]
    assert {r.reference_id for r in matched} >= {"lin-manuel-miranda"}
    # One query per person per shot: he is in two shots of the clip (a profile, then a long close-up).
    assert sum(r.reference_id == "lin-manuel-miranda" for r in matched) <= 2
    # Nobody in the clip is an LFW distractor: none matches at the watchlist default.
    assert not [r for r in matched if r.reference_id.startswith("lfw-")]
    # The watchlist was never calibrated: the server says so when the camera first streams to it.
    assert any("the watchlist is not calibrated" in r.getMessage() for r in caplog.records)


def frames_of(clip: Path) -> list[Frame]:
    capture = cv2.VideoCapture(str(clip))
    fps = capture.get(cv2.CAP_PROP_FPS) or 12.0
    frames: list[Frame] = []
    while True:
        ok, image = capture.read()
        if not ok:
            return frames
        rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), dtype=np.uint8)
        frames.append(Frame(index=len(frames), timestamp=len(frames) / fps, image=rgb))


class Collect:
    def __init__(self) -> None:
        self.tracks: list[ReadyTrack] = []

    def submit(self, request: pb.IdentifyRequest, track: ReadyTrack) -> str:
        self.tracks.append(track)
        return str(len(self.tracks))


@pytest.mark.parametrize(
    ("clip", "people"),
    [
        (f"{INTEL}/face-demographics-walking-and-pause.mp4", 3),
        (f"{INTEL}/head-pose-face-detection-female-and-male.mp4", 2),
    ],
)
def test_people_enrolled_from_the_first_half_are_identified_in_the_second(  # type: ignore[no-untyped-def]
    watchlist,
    role_pki: RolePki,
    pipeline: FacePipeline,
    faces_dir: Path,
    tmp_path: Path,
    clip: str,
    people: int,
) -> None:
    """No independent photo of these people exists: each is enrolled from the best shot of the clip's
    first half, and must be identified from the second half (other poses, other moments)."""
    port, clients = watchlist
    frames = frames_of(faces_dir / "video" / clip)
    half = len(frames) // 2
    collect = Collect()
    EdgeLoop(pipeline, collect, LoopSettings(gallery_id=GALLERY)).run(frames[:half])
    assert len(collect.tracks) == people, [t.track_id for t in collect.tracks]
    enrolled = [f"{Path(clip).stem}-person-{t.track_id}" for t in collect.tracks]
    for reference, track in zip(enrolled, collect.tracks, strict=True):
        clients.admin.matching.InsertTemplate(
            pb.InsertTemplateRequest(
                gallery_id=GALLERY, reference_id=reference, template=embedding_probe(track.best.embedding)
            )
        )
    second = tmp_path / "second-half"
    second.mkdir()
    for frame in frames[half:]:
        cv2.imwrite(str(second / f"{frame.index:05d}.png"), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    config = write_camera(tmp_path, port, role_pki, second)
    text = config.read_text().replace("pace = 'asap'", "pace = 'asap'\nfolder_fps = 12.0")
    config.write_text(text)
    summary, results = run_client(config, pipeline)
    print(f"\n{Path(clip).name}:", *summary.lines(), *(r.line() for r in results), sep="\n  ")
    identified = {r.reference_id for r in results if r.decision == "MATCH"}
    assert not [r for r in identified if r.startswith("lfw-")], "no LFW distractor at the default threshold"
    assert identified == set(enrolled), "every person of the clip is identified, and nobody else"
    assert len(results) <= people + 1, "about one query per person"


def test_a_source_that_cannot_be_opened_is_a_clear_error(  # type: ignore[no-untyped-def]
    watchlist, role_pki: RolePki, pipeline: FacePipeline, tmp_path: Path
) -> None:
    port, _ = watchlist
    client = EdgeClient(
        load_edge_config(write_camera(tmp_path, port, role_pki, tmp_path / "no-such-clip.mp4")),
        pipeline=pipeline,
    )
    try:
        with pytest.raises(SourceUnavailable, match="no-such-clip"):
            client.run()
    finally:
        client.close()


def test_bad_certificates_are_refused_before_anything_is_sent(  # type: ignore[no-untyped-def]
    watchlist, role_pki: RolePki, faces_dir: Path, tmp_path: Path
) -> None:
    port, _ = watchlist
    clip = faces_dir / "video" / INTEL / "head-pose-face-detection-female.mp4"
    config = write_camera(tmp_path, port, role_pki, clip)
    # A key of another certificate.
    (tmp_path / "cam-key.pem").write_bytes(role_pki.clients[Role.OFFICER].key_pem)
    with pytest.raises(CredentialsError, match="does not belong"):
        EdgeClient(load_edge_config(config))
    # A certificate of another CA.
    stranger = foreign_cert(tmp_path / "foreign", "cam-1", Role.CCTV_EDGE)
    (tmp_path / "cam.pem").write_bytes(stranger.cert_pem)
    (tmp_path / "cam-key.pem").write_bytes(stranger.key_pem)
    with pytest.raises(CredentialsError, match="not issued by the CA"):
        EdgeClient(load_edge_config(config))
    # An expired certificate of the right CA.
    expired = role_pki.expired("cam-old", Role.CCTV_EDGE)
    (tmp_path / "cam.pem").write_bytes(expired.cert_pem)
    (tmp_path / "cam-key.pem").write_bytes(expired.key_pem)
    with pytest.raises(CredentialsError, match="expired"):
        EdgeClient(load_edge_config(config))
