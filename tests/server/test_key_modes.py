"""Key files others may read are refused, and every folder the server makes is owner-only (issue #15, 10).

Before: the transparency log's signing key was read whatever its mode, the KEK and
template-transform keyrings and the station key only warned, and the server made
snapshots/ (and any missing parent of its data folder) with the umask's mode, 0755, and
wrote the PKI's index 0644. Each key file is checked here the way an operator meets it:
a real server started on a data folder whose key has been made group-readable.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from safepassage.api.v1 import matching_pb2 as pb
from safepassage.api.v1 import matching_pb2_grpc as pb_grpc
from safepassage.camera_edge.connection import DeviceCredentials
from safepassage.camera_edge.errors import CredentialsError
from safepassage.cli.client import ClientFiles, ClientSetupError, open_channel
from safepassage.core.errors import SafePassageError
from safepassage.server.config import Config, load_config
from safepassage.server.identity import Role
from safepassage.server.key_layout import key_files
from safepassage.server.pki_folder import PkiPaths
from safepassage.server.pki_issuance import Pki
from safepassage.store import TemplateSealer
from safepassage.store.errors import InvalidKey
from tests.conftest import REPO
from tests.pki_helpers import CHANNEL_OPTIONS, RolePki

pytestmark = pytest.mark.server


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def server_config(root: Path, model_dir: Path) -> Config:
    """A server whose data folder's parents do not exist yet, with the development PKI it makes itself."""
    return load_config(
        None,
        {
            "storage.data_dir": str(root / "srv" / "data"),
            "listen.port": 0,
            "console.port": 0,  # the console starts too (a development PKI): on a free port
            "faces.model_dir": str(model_dir),
            "limits.enabled": False,
            "fishing.enabled": False,
        },
    )


def refused_at_start(config: Config) -> str:
    from safepassage.app import create_server

    try:
        service, _ = create_server(config)
    except SafePassageError as error:
        return str(error)
    service.stop(grace_s=0)
    pytest.fail("the server started")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Iterator[Config]:
    """A server's first run on a fresh machine: it makes every folder and key, keeps a snapshot, stops."""
    from safepassage.app import create_server

    config = server_config(tmp_path_factory.mktemp("first-run"), model_dir)
    service, port = create_server(config)
    service.start()
    try:
        clients = PkiPaths(config.pki_dir)
        credentials = grpc.ssl_channel_credentials(
            root_certificates=clients.ca_cert.read_bytes(),
            private_key=clients.client_key("dev-admin").read_bytes(),
            certificate_chain=clients.client_cert("dev-admin").read_bytes(),
        )
        with grpc.secure_channel(f"localhost:{port}", credentials, options=CHANNEL_OPTIONS) as channel:
            galleries, matching = pb_grpc.GalleryServiceStub(channel), pb_grpc.MatchingServiceStub(channel)
            galleries.CreateGallery(pb.CreateGalleryRequest(gallery_id="desk", purpose=pb.WATCHLIST))
            vector = np.random.default_rng(3).normal(scale=0.1, size=128).astype(np.float32)
            matching.InsertTemplate(
                pb.InsertTemplateRequest(
                    gallery_id="desk",
                    reference_id="case-1",
                    template=pb.Probe(embedding=pb.Embedding(values=vector.tolist())),
                )
            )
    finally:
        service.stop(grace_s=1)  # writes the index snapshot
    yield config


def test_every_folder_the_server_makes_is_owner_only(first_run: Config) -> None:
    root = first_run.storage.data_dir.parent  # <tmp>/srv: made by the server too
    assert (first_run.snapshot_dir / "desk.snapshot").exists()
    folders = [root, *(path for path in root.rglob("*") if path.is_dir())]
    assert (
        first_run.snapshot_dir in folders and first_run.keys_dir in folders and first_run.pki_dir in folders
    )
    assert {str(folder): oct(mode(folder)) for folder in folders} == {str(f): oct(0o700) for f in folders}
    pki = PkiPaths(first_run.pki_dir)
    assert mode(pki.index) == 0o600 and mode(pki.revoked) == 0o600
    # Nothing the server wrote is readable by others but certificates, which are public.
    certificates = {pki.ca_cert, pki.server_cert, pki.console_cert, pki.client_cert("dev-admin")}
    exposed = [
        str(path)
        for path in root.rglob("*")
        if path.is_file() and path not in certificates and mode(path) & 0o077
    ]
    assert exposed == []


def test_every_key_file_others_may_read_is_refused_at_start_with_the_file_named(first_run: Config) -> None:
    # The two the server read whatever their mode first, then every other key file it reads.
    first = [first_run.audit_key_path, first_run.keyring_path]
    others = [path for _, path in key_files(first_run) if path not in first]
    keys = [*first, *others, PkiPaths(first_run.pki_dir).server_key]
    assert all(path.exists() for path in keys) and len(keys) == 8
    for path in keys:
        path.chmod(0o640)
        try:
            message = refused_at_start(first_run)
        finally:
            path.chmod(0o600)
        assert str(path) in message and f"chmod 600 {path}" in message, message


def test_a_client_key_others_may_read_is_refused_by_every_client(role_pki: RolePki, tmp_path: Path) -> None:
    """The command line, the edge device and `safepassage authorise` read a client's key the same way."""
    bundle = tmp_path / "bundle"
    admin = Pki.open(role_pki.folder).issue_client("admin-modes", Role.ADMIN, replace=True)
    paths = PkiPaths(bundle)
    paths.clients.mkdir(parents=True)
    paths.ca_cert.write_bytes(role_pki.ca_pem)
    paths.client_cert("admin-modes").write_bytes(admin.cert_pem)
    key = paths.client_key("admin-modes")
    key.write_bytes(admin.key_pem)
    key.chmod(0o644)

    with pytest.raises(ClientSetupError, match=f"chmod 600 {key}"):
        open_channel("localhost:1", ClientFiles.resolve(bundle, "admin-modes"))
    with pytest.raises(CredentialsError, match=f"chmod 600 {key}"):
        DeviceCredentials.load(paths.ca_cert, paths.client_cert("admin-modes"), key)
    authorise = [
        *("authorise", "desk", "--camera", "cam-1", "--legal-basis", "Order 1", "--hours", "1"),
        *("--pki-dir", str(bundle), "--client", "admin-modes"),
        "--uncalibrated-ok",  # signs offline: no server to ask about the gallery's calibration
    ]
    run = subprocess.run(
        [sys.executable, "-m", "safepassage.cli.main", *authorise],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2 and f"chmod 600 {key}" in run.stderr and run.stdout == ""
    key.chmod(0o600)
    run = subprocess.run(
        [sys.executable, "-m", "safepassage.cli.main", *authorise],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0 and run.stdout.count(".") == 2, run.stderr


def test_a_store_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(TemplateSealer.generate_key())
    path.chmod(0o604)
    with pytest.raises(InvalidKey, match=f"chmod 600 {path}"):
        TemplateSealer.load_key(path)
