"""The wheel installs one name, and each extra installs what its side imports.

The wheel is built from this tree and installed, outside the repository, into a clean venv per
extra with exactly the locked versions of that extra (`uv export`). Each venv then runs its entry
points from a folder that holds no source, so nothing can be imported from the checkout:
- `edge`: the camera side imports every module of `camera_edge` and of `face` (the pipeline it runs;
  the dlib backend's module imports dlib only when one is built) and runs `edge run --help`; the
  server side is absent and `safepassage serve` says which extra to install, in one line;
- `server`: every module of the server's rooms imports and `serve --help` runs; the optional
  backends (Milvus, evaluation plots) are absent and say so with an install hint;
- every extra: every module of the package imports and `evaluate --help` runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import MODEL_DIR, REPO

UV = shutil.which("uv") or str(REPO / ".tooling" / "bin" / "uv")
IMPORT_ALL = """
import importlib, pkgutil, sys
import safepassage
rooms = sys.argv[1].split(",")
optional = tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 else ()
done = 0
for room in rooms:
    module = importlib.import_module(f"safepassage.{room}")
    below = pkgutil.walk_packages(getattr(module, "__path__", []), f"safepassage.{room}.")
    names = [module.__name__] + [i.name for i in below]
    for name in names:
        if optional and name.startswith(optional):
            continue
        importlib.import_module(name)
        done += 1
assert "/site-packages/" in safepassage.__file__, safepassage.__file__
print(done)
"""
EDGE_ROOMS = "core,api,credential,face,camera_edge"
SERVER_ROOMS = (
    "core,api,credential,store,audit,matcher,camera_edge,face,enrolment,travel_document,server,app,cli"
)
# The optional backends: Milvus (the milvus extra) and the evaluation harness (evaluation, for its plots).
OPTIONAL = "safepassage.matcher.milvus_,safepassage.evaluation"


def _run(*command: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=540, check=False)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = _run(UV, "build", "--wheel", "--out-dir", str(out), cwd=REPO)
    assert built.returncode == 0, built.stderr
    (found,) = out.glob("safepassage-*.whl")
    return found


def test_the_wheel_holds_one_package_and_its_type_marker(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"safepassage"}, sorted(top)
    assert "safepassage/py.typed" in names
    assert "safepassage/evaluation/run.py" in names  # the harness ships with the product
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/"))]


def _venv(wheel: Path, where: Path, extras: list[str]) -> Path:
    """A clean venv outside the repository with the locked versions of `extras`, then the wheel.

    `uv sync` into another environment installs exactly the lock's files (from the uv cache that
    `make setup` filled, so no index is asked); the wheel goes in after it, without dependencies.
    """
    venv = where / "venv"
    flags = [arg for extra in extras for arg in ("--extra", extra)]
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
    env.pop("VIRTUAL_ENV", None)
    synced = _run(
        UV, "sync", "--locked", "--no-dev", "--no-install-project", *flags, "--python", sys.executable,
        cwd=REPO, env=env,
    )  # fmt: skip
    assert synced.returncode == 0, synced.stderr
    python = venv / "bin" / "python"
    installed = _run(UV, "pip", "install", "--python", str(python), "--no-deps", str(wheel), cwd=where)
    assert installed.returncode == 0, installed.stderr
    return venv


def _environment(venv: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return {**keep, "PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}"}


@pytest.fixture(scope="module")
def edge(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("edge")
    yield _venv(wheel, where, ["edge"])


@pytest.fixture(scope="module")
def server(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    where = tmp_path_factory.mktemp("server")
    yield _venv(wheel, where, ["server"])


def test_an_edge_install_runs_the_camera_side_and_names_the_extra_the_server_needs(
    edge: Path, tmp_path: Path
) -> None:
    env = _environment(edge)
    imported = _run(str(edge / "bin" / "python"), "-c", IMPORT_ALL, EDGE_ROOMS, cwd=tmp_path, env=env)
    assert imported.returncode == 0, imported.stderr
    assert int(imported.stdout) > 20
    for command in (("edge", "run", "--help"), ("edge", "kiosk", "--help"), ("--help",)):
        helped = _run(str(edge / "bin" / "safepassage"), *command, cwd=tmp_path, env=env)
        assert helped.returncode == 0, (command, helped.stderr)
    absent = _run(str(edge / "bin" / "python"), "-c", "import faiss", cwd=tmp_path, env=env)
    assert absent.returncode != 0  # nothing of the server side came with the edge extra
    serve = _run(str(edge / "bin" / "safepassage"), "serve", "--port", "0", cwd=tmp_path, env=env)
    assert serve.returncode == 2 and "Traceback" not in serve.stderr, serve.stderr
    assert len(serve.stderr.strip().splitlines()) == 1 and "--extra server" in serve.stderr, serve.stderr


def test_a_server_install_imports_every_server_module_and_optional_backends_give_a_hint(
    server: Path, tmp_path: Path
) -> None:
    env = _environment(server)
    imported = _run(
        str(server / "bin" / "python"), "-c", IMPORT_ALL, SERVER_ROOMS, OPTIONAL, cwd=tmp_path, env=env
    )
    assert imported.returncode == 0, imported.stderr
    milvus = tmp_path / "milvus.toml"
    milvus.write_text(f'[faces]\nmodel_dir = "{MODEL_DIR}"\n[matching]\nbackend = "milvus"\n')
    serve = _run(
        str(server / "bin" / "safepassage"), "serve", "--config", str(milvus), "--port", "0",
        "--data-dir", str(tmp_path / "data"), cwd=tmp_path, env=env,
    )  # fmt: skip
    assert serve.returncode == 2 and "Traceback" not in serve.stderr, serve.stderr
    assert "install the milvus extra" in serve.stderr.strip().splitlines()[-1], serve.stderr
    for command in (("serve", "--help"), ("evaluate", "--help"), ("gallery", "create", "--help")):
        helped = _run(str(server / "bin" / "safepassage"), *command, cwd=tmp_path, env=env)
        assert helped.returncode == 0, (command, helped.stderr)
    evaluate = _run(
        str(server / "bin" / "safepassage"), "evaluate", "--faces", str(tmp_path), cwd=tmp_path, env=env
    )
    assert evaluate.returncode == 2 and "Traceback" not in evaluate.stderr, evaluate.stderr
    assert "--extra evaluation" in evaluate.stderr, evaluate.stderr


def test_every_extra_together_imports_the_whole_package(wheel: Path, tmp_path: Path) -> None:
    venv = _venv(wheel, tmp_path, ["edge", "server", "models", "milvus", "evaluation", "abis"])
    env = _environment(venv)
    rooms = ",".join(
        sorted(p.name for p in (REPO / "safepassage").iterdir() if (p / "__init__.py").is_file())
    )
    imported = _run(str(venv / "bin" / "python"), "-c", IMPORT_ALL, f"{rooms},app", cwd=tmp_path, env=env)
    assert imported.returncode == 0, imported.stderr
