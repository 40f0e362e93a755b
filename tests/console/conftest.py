"""A real server with its console, over mutual TLS on free ports, for the console's tests (one per module).

The PKI is the module's own (not the session's `role_pki`): it gets the console's certificate, and
tests revoke and issue in it. Faces are real, from ../shared/data/faces: a watchlist of people
from face_recognition's photos among LFW distractors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.server.identity import Role
from safepassage.server.pki_issuance import IssuedCert
from safepassage.server.service import Service
from tests.pki_helpers import CHANNEL_OPTIONS, RolePki

WATCHLIST = "border-watchlist"
# The watchlist's people (reference id -> photo enrolled) and the other photos of them that probe it.
ENROLLED = {
    "case-obama": "face_recognition/obama/obama.jpg",
    "case-biden": "face_recognition/biden/biden.jpg",
    "case-harington": "face_recognition/kit_harington/john1.jpeg",
    "case-leslie": "face_recognition/rose_leslie/img1.jpg",
}
PROBES = {
    "obama": "face_recognition/obama/obama2.jpg",
    "biden": "face_recognition/biden/biden2.jpg",
    "leslie": "face_recognition/rose_leslie/img2.jpg",
    # Nobody enrolled: a stranger.
    "stranger": "face_recognition/alex_lacamoire/img1.jpg",
}
DISTRACTORS = 12  # LFW people with one photo each, enrolled beside the watchlist's people


@dataclass
class ConsoleWorld:
    service: Service
    grpc_port: int
    console_port: int
    pki: RolePki
    console: IssuedCert
    faces: Path
    folder: Path

    @property
    def origin(self) -> str:
        return f"https://127.0.0.1:{self.console_port}"

    def photo(self, name: str) -> bytes:
        return (self.faces / PROBES[name]).read_bytes()

    def photo_path(self, name: str) -> Path:
        return self.faces / PROBES[name]

    def console_channel(self, issued: IssuedCert | None = None) -> grpc.Channel:
        """A channel presenting the console's certificate (or `issued`) to the gRPC port."""
        presented = issued or self.console
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.pki.ca_pem,
            private_key=presented.key_pem,
            certificate_chain=presented.cert_pem,
        )
        return grpc.secure_channel(f"localhost:{self.grpc_port}", credentials, options=CHANNEL_OPTIONS)

    def channel(self, role: Role) -> grpc.Channel:
        return self.pki.channel_for(self.grpc_port, role)


def der(issued: IssuedCert) -> bytes:
    return x509.load_pem_x509_certificate(issued.cert_pem).public_bytes(serialization.Encoding.DER)


def enrol_watchlist(world: ConsoleWorld) -> None:
    with world.channel(Role.ADMIN) as channel:
        galleries = pb_grpc.GalleryServiceStub(channel)
        matching = pb_grpc.MatchingServiceStub(channel)
        galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id=WATCHLIST, purpose=pb.WATCHLIST))
        for reference, path in ENROLLED.items():
            matching.InsertTemplate(
                pb.InsertTemplateRequest(
                    gallery_id=WATCHLIST,
                    reference_id=reference,
                    template=pb.Probe(image=(world.faces / path).read_bytes()),
                    face_selection=pb.LARGEST,
                )
            )
        people = sorted(p for p in (world.faces / "lfw").iterdir() if len(list(p.glob("*.jpg"))) == 1)
        for person in people[:DISTRACTORS]:
            matching.InsertTemplate(
                pb.InsertTemplateRequest(
                    gallery_id=WATCHLIST,
                    reference_id=f"lfw-{person.name.lower().replace('_', '-')}",
                    template=pb.Probe(image=next(person.glob("*.jpg")).read_bytes()),
                    face_selection=pb.LARGEST,
                )
            )


@pytest.fixture(scope="module")
def console_settings() -> Callable[[RolePki, Path], dict[str, object]]:
    """What a module adds to its server's configuration, given its PKI and folder (a module overrides it)."""
    return lambda pki, folder: {}


@pytest.fixture(scope="module")
def console_world(
    tmp_path_factory: pytest.TempPathFactory,
    model_dir: Path,
    faces_dir: Path,
    console_settings: Callable[[RolePki, Path], dict[str, object]],
) -> Iterator[ConsoleWorld]:
    from safepassage.app import create_server
    from safepassage.server.config import load_config

    folder = tmp_path_factory.mktemp("console")
    pki = RolePki.create(folder / "pki")
    console = pki.pki.issue_console()
    config = load_config(
        None,
        {
            "storage.data_dir": str(folder / "data"),
            "listen.port": 0,
            "console.port": 0,
            "faces.model_dir": str(model_dir),
            "tls.pki_dir": str(pki.folder),
            # The browser calls as fast as it can; the limits have tests of their own.
            "limits.enabled": False,
            "fishing.enabled": False,
            **console_settings(pki, folder),
        },
    )
    service, port = create_server(config)
    try:
        service.start()
        assert service.console is not None, "the console did not start"
        world = ConsoleWorld(service, port, service.console.port, pki, console, faces_dir, folder)
        enrol_watchlist(world)
        yield world
    finally:
        service.stop(grace_s=1)
