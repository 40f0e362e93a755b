"""Live CCTV identification: only under a valid signed authorisation; hits are kept for an
officer to confirm, and unconfirmed camera probes are erased after the retention."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.server.cctv_authorisation import METADATA_KEY, sign
from safepassage.server.identity import Role
from tests.pki_helpers import RolePki, foreign_cert

pytestmark = pytest.mark.server
DIM = 128
KNOWN = np.random.default_rng(31).normal(scale=0.1, size=DIM).astype(np.float32)


def probe(vector: np.ndarray) -> pb.Probe:
    return pb.Probe(embedding=pb.Embedding(values=vector.tolist()))


def token_for(
    issued: Any, gallery: str = "cams", cameras: tuple[str, ...] = ("cam-1",), **kwargs: Any
) -> str:
    return sign(
        gallery_id=gallery,
        cameras=list(cameras),
        legal_basis="Order 2026/114 of the border court",
        valid_for_s=kwargs.pop("valid_for_s", 3600),
        admin_cert=x509.load_pem_x509_certificate(issued.cert_pem),
        admin_key=load_pem_private_key(issued.key_pem, None),  # type: ignore[arg-type]
        **kwargs,
    )


@pytest.fixture(scope="module")
def cctv(server_factory, clients_for):  # type: ignore[no-untyped-def]
    service, port, _ = server_factory(**{"retention.camera_probe_hours": 24.0})
    clients = clients_for(port)
    clients.admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="cams", purpose=pb.WATCHLIST))
    clients.admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="other", purpose=pb.WATCHLIST))
    clients.admin.matching.InsertTemplate(
        pb.InsertTemplateRequest(gallery_id="cams", reference_id="wanted-1", template=probe(KNOWN))
    )
    return service, clients


def stream(
    clients: Any, token: str | None, vectors: list[np.ndarray], gallery: str = "cams"
) -> list[pb.IdentifyStreamResponse]:
    metadata = [(METADATA_KEY, token)] if token else []
    requests = [
        pb.IdentifyRequest(gallery_id=gallery, probe=probe(v), request_id=f"f{i}")
        for i, v in enumerate(vectors)
    ]
    return list(
        clients.as_role(Role.CCTV_EDGE).matching.IdentifyStream(iter(requests), metadata=metadata, timeout=30)
    )


def refused(clients: Any, token: str | None, says: str, gallery: str = "cams") -> None:
    with pytest.raises(grpc.RpcError) as info:
        stream(clients, token, [KNOWN], gallery)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert says in (info.value.details() or ""), info.value.details()


def test_streams_without_a_valid_authorisation_are_refused(cctv, role_pki: RolePki, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, clients = cctv
    admin = role_pki.clients[Role.ADMIN]
    refused(clients, None, "needs a signed authorisation")
    refused(clients, token_for(admin, now=time.time() - 7200, valid_for_s=3600), "expired")
    refused(clients, token_for(admin, now=time.time() + 3600), "not valid yet")
    refused(clients, token_for(admin, gallery="other"), "covers gallery 'other'")
    refused(clients, token_for(admin, cameras=("cam-9",)), "does not name camera 'cam-1'")
    refused(clients, token_for(role_pki.clients[Role.OFFICER]), "not signed by an admin")
    refused(clients, token_for(foreign_cert(tmp_path / "ca2", "admin-1", Role.ADMIN)), "did not issue")
    # Forged: the payload altered after signing (another gallery), the signature kept.
    payload, signature, cert = token_for(admin).split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["expires"] += 10 * 86400
    altered = (
        base64.urlsafe_b64encode(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
        .rstrip(b"=")
        .decode()
    )
    refused(clients, f"{altered}.{signature}.{cert}", "forged or altered")
    refused(clients, "not-a-token", "malformed")
    # A revoked admin's authorisation stops working at once.
    revoked_admin = role_pki.pki.issue_client("admin-gone", Role.ADMIN)
    token = token_for(revoked_admin)
    assert stream(clients, token, [KNOWN])[0].WhichOneof("outcome") == "result"
    role_pki.pki.revoke("admin-gone")
    refused(clients, token, "revoked")


def test_a_valid_authorisation_works_and_hits_are_kept_for_review(cctv, role_pki: RolePki) -> None:  # type: ignore[no-untyped-def]
    _, clients = cctv
    stranger = np.random.default_rng(5).normal(scale=0.1, size=DIM).astype(np.float32) + 3
    answers = stream(clients, token_for(role_pki.clients[Role.ADMIN]), [KNOWN + 0.001, stranger])
    hit, miss = answers
    assert hit.result.decision == pb.MATCH and hit.probe_id > 0
    assert hit.result.faces[0].candidates[0].reference_id == "wanted-1"
    assert miss.result.decision == pb.NO_MATCH and miss.probe_id == 0  # no-match probes are never stored
    confirmed = clients.officer.matching.ConfirmMatch(
        pb.ConfirmMatchRequest(gallery_id="cams", probe_id=hit.probe_id)
    )
    assert confirmed.reference_id == "wanted-1" and confirmed.state == pb.AWAITING_SECOND_REVIEW
    with pytest.raises(grpc.RpcError) as info:
        clients.officer.matching.ConfirmMatch(
            pb.ConfirmMatchRequest(gallery_id="other", probe_id=hit.probe_id)
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_unconfirmed_probes_are_gone_from_the_file_after_the_retention(cctv, role_pki: RolePki) -> None:  # type: ignore[no-untyped-def]
    service, clients = cctv
    kept = service.kept_probes
    long_ago = time.time() - 30 * 3600
    # With the face crop a camera may send (its bytes are an opaque JPEG here): purged with the hit.
    old = kept.keep(
        "cams",
        "cam-1",
        KNOWN,
        "wanted-1",
        captured_at=long_ago,
        authorisation_id="a1",
        face_crop=os.urandom(900),
    )
    old_confirmed = kept.keep("cams", "cam-1", KNOWN, "wanted-1", captured_at=long_ago, authorisation_id="a1")
    kept.confirm(old_confirmed, "cams", "officer:officer-1")
    kept.confirm(old_confirmed, "cams", "officer:officer-2")  # four eyes: confirmed by the second
    old_pending = kept.keep("cams", "cam-1", KNOWN, "wanted-1", captured_at=long_ago, authorisation_id="a1")
    kept.confirm(old_pending, "cams", "officer:officer-1")  # one confirmation only: still purged
    recent = stream(clients, token_for(role_pki.clients[Role.ADMIN]), [KNOWN + 0.002])[0].probe_id
    path = service.config.probes_path
    with sqlite3.connect(path) as db:
        old_blob, old_crop = db.execute(
            "SELECT sealed, face_crop FROM probes WHERE probe_id = ?", (old,)
        ).fetchone()
    assert service.purge_probes() >= 2
    for gone in (old, old_pending):
        with pytest.raises(Exception, match="not kept"):
            kept.get(gone)
    assert kept.get(old_confirmed).confirmed and kept.get(recent).probe_id == recent
    files = [p.read_bytes() for p in path.parent.glob(path.name + "*")]
    assert not any(old_blob in data or old_blob[-32:] in data or old_crop[-32:] in data for data in files)
    entries = service.transparency_log.entries(0, service.transparency_log.size())
    assert any(e.event().operation == "retention.purge" for e in entries)
    assert any(e.event().operation == "authorisation.use" for e in entries)
