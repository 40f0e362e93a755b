"""Shared fixtures: the real face data, and a real server on a free port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

pytest.register_assert_rewrite("tests.pki_helpers")

from safepassage.api.v1 import matching_pb2_grpc as pb_grpc  # noqa: E402 - after the rewrite hook
from safepassage.api.v1 import protected_identity_pb2_grpc as ppb_grpc  # noqa: E402
from safepassage.server.identity import Role  # noqa: E402
from tests.pki_helpers import RolePki  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FACES_ENV = "SAFEPASSAGE_FACES_DIR"
pytest_plugins = ("tests.pki_helpers", "tests.lfw_embeddings")


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """The shared face data; its absence fails the run loudly, never skips."""
    folder = Path(os.environ.get(FACES_ENV, REPO.parent / "shared" / "data" / "faces"))
    if not (folder / "lfw").is_dir():
        pytest.fail(
            f"face test data not found at {folder} (set {FACES_ENV} to its location;"
            " see ../shared/data/faces/README.md)",
            pytrace=False,
        )
    return folder


MODEL_DIR = REPO / "var" / "models"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The model pack, built by `make setup`; built here too if missing (idempotent)."""
    from safepassage.model_pack.build import build

    build(MODEL_DIR, MODEL_DIR / "cache")
    return MODEL_DIR


@pytest.fixture(scope="session")
def dlib_weights() -> Path:
    """The folder of dlib's weights in face_recognition_models (found without importing it)."""
    from safepassage.model_pack.build import dlib_models_dir

    return dlib_models_dir()


@pytest.fixture(scope="session")
def dat_path(dlib_weights: Path) -> Path:
    """dlib's 5-point shape predictor."""
    return dlib_weights / "shape_predictor_5_face_landmarks.dat"


@pytest.fixture(scope="session")
def npz_path(dat_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shape predictor converted by the model build step, once per session."""
    from safepassage.model_pack.shape_predictor import convert_shape_predictor

    path = tmp_path_factory.mktemp("shape_predictor") / "shape_predictor_5.npz"
    convert_shape_predictor(dat_path, path)
    return path


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "server: runs a real SafePassage server")


@pytest.fixture(scope="module")
def server_factory(
    tmp_path_factory: pytest.TempPathFactory, model_dir: Path, role_pki: RolePki
) -> Iterator[object]:
    """Start in-process servers on free ports with mutual TLS (the session PKI); stopped at module end."""
    from safepassage.app import create_server
    from safepassage.server.config import load_config

    started = []

    def start(data_dir: Path | None = None, **overrides: object):  # type: ignore[no-untyped-def]
        folder = data_dir or tmp_path_factory.mktemp("data")
        settings = {
            "storage.data_dir": str(folder),
            "listen.port": 0,
            "faces.model_dir": str(model_dir),
            "tls.pki_dir": str(role_pki.folder),
            # Tests call far faster than people; the limits have tests of their own.
            "limits.enabled": False,
            "fishing.enabled": False,
        }
        config = load_config(None, {**settings, **overrides})
        service, port = create_server(config)
        service.start()
        started.append(service)
        return service, port, config

    yield start
    for service in started:
        service.stop(grace_s=1)


@dataclass
class Stubs:
    channel: grpc.Channel
    galleries: pb_grpc.GalleryServiceStub
    matching: pb_grpc.MatchingServiceStub
    protected: ppb_grpc.ProtectedIdentityServiceStub


class Clients:
    """Stubs for each role against one server, over mutual TLS with the session PKI's certificates."""

    def __init__(self, port: int, pki: RolePki) -> None:
        self.port = port
        self._pki = pki
        self._open: dict[Role, Stubs] = {}

    def as_role(self, role: Role) -> Stubs:
        if role not in self._open:
            channel = self._pki.channel_for(self.port, role)
            self._open[role] = Stubs(
                channel,
                pb_grpc.GalleryServiceStub(channel),
                pb_grpc.MatchingServiceStub(channel),
                ppb_grpc.ProtectedIdentityServiceStub(channel),
            )
        return self._open[role]

    @property
    def admin(self) -> Stubs:
        return self.as_role(Role.ADMIN)

    @property
    def officer(self) -> Stubs:
        return self.as_role(Role.OFFICER)

    @property
    def ngo(self) -> Stubs:
        return self.as_role(Role.NGO_CASEWORKER)

    @property
    def kiosk(self) -> Stubs:
        return self.as_role(Role.KIOSK)

    def close(self) -> None:
        for stubs in self._open.values():
            stubs.channel.close()
        self._open.clear()

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(scope="module")
def clients_for(role_pki: RolePki) -> Iterator[object]:
    opened: list[Clients] = []

    def make(port: int) -> Clients:
        clients = Clients(port, role_pki)
        opened.append(clients)
        return clients

    yield make
    for clients in opened:
        clients.close()


@pytest.fixture(autouse=True)
def _no_server_process_outlives_its_test() -> Iterator[None]:
    """A test that fails before stopping its server processes must not leave them running."""
    yield
    from tests.process import kill_leftovers

    kill_leftovers()
