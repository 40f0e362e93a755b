"""CCTV authorisations are bound to the certificate that signed them (issue #15, finding 6).

An admin could sign a payload naming another admin as `issued_by` (crediting, or blaming,
them in the transparency log), and the 31-day limit was enforced only by `sign()`: a token
crafted with an admin's key and a ten-year window was accepted. Each attack here is made
the way an admin with their own key would make it: a payload signed directly, no `sign()`.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import grpc
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.server.cctv_authorisation import MAX_VALIDITY_S, METADATA_KEY, sign
from safepassage.server.identity import Role
from safepassage.server.pki_folder import format_serial
from safepassage.server.pki_issuance import IssuedCert
from tests.pki_helpers import RolePki

pytestmark = pytest.mark.server
DIM = 128
WANTED = np.random.default_rng(41).normal(scale=0.1, size=DIM).astype(np.float32)
DAY = 86400


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def crafted(signer: IssuedCert, **changes: Any) -> str:
    """A token signed directly with `signer`'s key: the payload says whatever the signer wants."""
    start = int(time.time()) - 60
    body: dict[str, Any] = {
        "authorisation_id": secrets.token_hex(8),
        "gallery_id": "cams",
        "cameras": ["cam-1"],
        "legal_basis": "Order 2026/114 of the border court",
        "not_before": start,
        "expires": start + 3600,
        "issued_by": signer.client_id,
        "version": 1,
    }
    body.update(changes)
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    key = load_pem_private_key(signer.key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    der = x509.load_pem_x509_certificate(signer.cert_pem).public_bytes(Encoding.DER)
    return ".".join((_b64(payload), _b64(signature), _b64(der)))


def signed(signer: IssuedCert, valid_for_s: int = 3600) -> str:
    key = load_pem_private_key(signer.key_pem, None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return sign(
        gallery_id="cams",
        cameras=["cam-1"],
        legal_basis="Order 2026/114 of the border court",
        valid_for_s=valid_for_s,
        admin_cert=x509.load_pem_x509_certificate(signer.cert_pem),
        admin_key=key,
    )


@pytest.fixture(scope="module")
def cameras(server_factory, clients_for):  # type: ignore[no-untyped-def]
    service, port, _ = server_factory()
    clients = clients_for(port)
    clients.admin.galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="cams", purpose=pb.WATCHLIST))
    clients.admin.matching.InsertTemplate(
        pb.InsertTemplateRequest(
            gallery_id="cams",
            reference_id="wanted-1",
            template=pb.Probe(embedding=pb.Embedding(values=WANTED.tolist())),
        )
    )
    return service, clients


def stream(clients: Any, token: str) -> list[pb.IdentifyStreamResponse]:
    request = pb.IdentifyRequest(
        gallery_id="cams", probe=pb.Probe(embedding=pb.Embedding(values=WANTED.tolist())), request_id="f0"
    )
    camera = clients.as_role(Role.CCTV_EDGE).matching
    return list(camera.IdentifyStream(iter([request]), metadata=[(METADATA_KEY, token)], timeout=30))


def refusal(clients: Any, token: str) -> str:
    with pytest.raises(grpc.RpcError) as info:
        stream(clients, token)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED, info.value.details()
    return info.value.details() or ""


def test_an_authorisation_naming_another_admin_as_its_signer_is_refused(
    cameras: tuple[Any, Any], role_pki: RolePki
) -> None:
    _, clients = cameras
    signer = role_pki.clients[Role.ADMIN]
    other = role_pki.pki.issue_client("admin-credited", Role.ADMIN, replace=True)
    assert stream(clients, crafted(signer))[0].WhichOneof("outcome") == "result"  # the control
    details = refusal(clients, crafted(signer, issued_by=other.client_id))
    assert "signed by" in details and signer.client_id in details
    # Nor may it name no one, or a client that is not an admin at all.
    refusal(clients, crafted(signer, issued_by=""))
    refusal(clients, crafted(signer, issued_by=role_pki.clients[Role.OFFICER].client_id))


def test_a_ten_year_authorisation_is_refused_when_verified(
    cameras: tuple[Any, Any], role_pki: RolePki
) -> None:
    _, clients = cameras
    admin = role_pki.clients[Role.ADMIN]
    now = int(time.time())
    details = refusal(clients, crafted(admin, not_before=now - 60, expires=now + 3650 * DAY))
    assert "31 days" in details
    refusal(clients, crafted(admin, not_before=now - 60, expires=now - 60 + MAX_VALIDITY_S + 1))
    # The longest window `sign` makes is accepted: the limit is the same on both sides.
    assert stream(clients, signed(admin, MAX_VALIDITY_S))[0].WhichOneof("outcome") == "result"
    # Windows that end before they start, or times that are not whole seconds, are not windows.
    assert "after it starts" in refusal(clients, crafted(admin, not_before=now + 60, expires=now - 60))
    for bad in ({"expires": float(now + 600)}, {"not_before": "0"}, {"expires": True}, {"cameras": "cam-1"}):
        assert "malformed" in refusal(clients, crafted(admin, **bad))
    assert "malformed" in refusal(clients, crafted(admin, signer_serial="00"))  # no field beyond the format


def test_the_signers_certificate_serial_is_recorded_in_the_transparency_log(
    cameras: tuple[Any, Any], role_pki: RolePki
) -> None:
    service, clients = cameras
    admin = role_pki.pki.issue_client("admin-logged", Role.ADMIN, replace=True)
    before = service.transparency_log.size()
    assert stream(clients, signed(admin))[0].WhichOneof("outcome") == "result"
    events = [
        entry.event()
        for entry in service.transparency_log.entries(before, service.transparency_log.size())
        if entry.event().operation == "authorisation.use"
    ]
    assert len(events) == 1
    assert events[0].details["issued_by"] == "admin-logged"
    assert events[0].details["signer_serial"] == format_serial(admin.serial)
