"""An edge-only box gets the model pack by export and install (issue #17, item 3).

The box cannot build the pack (no dlib, no onnx), and the error told it to "run make models".
Now the server side exports one archive and the box installs it into the camera's configured
model folder, after checking every file's sha256 against the manifest; a tampered or malformed
archive installs nothing. The commands are the real CLI in child processes.
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from safepassage.face.errors import ManifestError
from safepassage.face.manifest import MANIFEST_NAME, ModelPack
from safepassage.face.pipeline import PipelineSettings, load_pipeline
from safepassage.model_pack.archive import install_pack
from safepassage.model_pack.errors import ModelArchiveError

CLI = (sys.executable, "-m", "safepassage.cli.main")
SERVER_SIDE = (
    "onnx",
    "dlib",
    "face_recognition",
    "face_recognition_models",
    "faiss",
    "safepassage.model_pack.build",
)


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def camera(folder: Path) -> Path:
    """A camera file whose model folder is relative: `models` beside the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "camera.toml"
    path.write_text(
        'camera_id = "cam-1"\n[source]\nlocation = "0"\n[server]\naddress = "localhost:9"\n'
        'gallery_id = "cams"\nplaintext = true\n[detection]\nmodel_dir = "models"\n'
    )
    return path


@pytest.fixture(scope="module")
def archive(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "models.tar"
    exported = cli(
        out.parent / "elsewhere", "models", "export", "--models", str(model_dir), "--out", str(out)
    )
    assert exported.returncode == 0, exported.stderr
    return out


def rewritten(
    archive: Path, out: Path, change: dict[str, bytes | None], extra: list[tarfile.TarInfo]
) -> Path:
    """A copy of `archive` with members' contents replaced (None: left out) and `extra` members added."""
    with tarfile.open(archive) as source, tarfile.open(out, "w") as target:
        for member in source.getmembers():
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name in change:
                replacement = change[member.name]
                if replacement is None:
                    continue
                data = replacement
                member.size = len(data)
            target.addfile(member, io.BytesIO(data))
        for info in extra:
            target.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return out


def test_a_missing_pack_names_the_folder_and_the_edge_command(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as missing:
        load_pipeline(PipelineSettings(model_dir=tmp_path / "models"))
    message = str(missing.value)
    assert str(tmp_path / "models") in message
    assert "safepassage models export" in message and "safepassage edge models install" in message


def test_export_then_install_from_another_folder_gives_a_verified_pack(
    archive: Path, model_dir: Path, tmp_path: Path
) -> None:
    config = camera(tmp_path / "camera")
    installed = cli(
        tmp_path / "elsewhere", "edge", "models", "install", str(archive), "--config", str(config)
    )
    assert installed.returncode == 0, installed.stderr
    pack = ModelPack.load(tmp_path / "camera/models")
    original = ModelPack.load(model_dir)
    assert {k: e.sha256 for k, e in pack.models.items()} == {k: e.sha256 for k, e in original.models.items()}
    assert all(pack.path_of(key) for key in pack.models)  # every file present with its sha256
    assert load_pipeline(PipelineSettings(model_dir=tmp_path / "camera/models")).embedder is not None
    assert not (tmp_path / "elsewhere/models").exists()
    assert sorted(p.name for p in (tmp_path / "camera").iterdir()) == ["camera.toml", "models"]


def test_a_tampered_file_is_refused_and_nothing_is_installed(archive: Path, tmp_path: Path) -> None:
    with tarfile.open(archive) as tar:
        onnx = tar.extractfile("dlib_resnet_v1.onnx").read()  # type: ignore[union-attr]
    flipped = onnx[:1000] + bytes([onnx[1000] ^ 1]) + onnx[1001:]
    tampered = rewritten(archive, tmp_path / "tampered.tar", {"dlib_resnet_v1.onnx": flipped}, [])
    config = camera(tmp_path / "camera")
    refused = cli(tmp_path / "elsewhere", "edge", "models", "install", str(tampered), "--config", str(config))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "sha256" in refused.stderr and "dlib-resnet-v1" in refused.stderr, refused.stderr
    assert sorted(p.name for p in (tmp_path / "camera").iterdir()) == ["camera.toml"], "nothing installed"

    # Over an installed pack, the refused archive leaves that pack exactly as it was.
    assert cli(tmp_path, "edge", "models", "install", str(archive), "--config", str(config)).returncode == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "camera/models").iterdir()}
    again = cli(tmp_path, "edge", "models", "install", str(tampered), "--config", str(config))
    assert again.returncode == 2 and "sha256" in again.stderr, again.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "camera/models").iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "camera").iterdir()) == ["camera.toml", "models"]


def member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size if kind == tarfile.REGTYPE else 0
    if kind == tarfile.SYMTYPE:
        info.linkname = "/etc/passwd"
    return info


@pytest.mark.parametrize(
    ("change", "extra", "says"),
    [
        ({}, [member("../escape.onnx")], "not a plain relative path"),
        ({}, [member("/tmp/absolute.onnx")], "not a plain relative path"),
        ({}, [member("link.onnx", tarfile.SYMTYPE)], "not a regular file"),
        ({}, [member("extra.onnx")], "does not name"),
        ({"centerface.onnx": None}, [], "lacks files"),
        ({MANIFEST_NAME: None}, [], f"no {MANIFEST_NAME}"),
        ({MANIFEST_NAME: b"{not json"}, [], "unreadable"),
    ],
)
def test_a_malformed_archive_is_refused_and_nothing_is_installed(
    archive: Path, tmp_path: Path, change: dict[str, bytes | None], extra: list[tarfile.TarInfo], says: str
) -> None:
    bad = rewritten(archive, tmp_path / "bad.tar", change, extra)
    with pytest.raises((ModelArchiveError, ManifestError), match=says):
        install_pack(bad, tmp_path / "box/models")
    assert list((tmp_path / "box").iterdir()) == [], "nothing installed, no staging left behind"
    assert not Path("/tmp/absolute.onnx").exists()


def test_install_needs_nothing_of_the_server_side(archive: Path, tmp_path: Path) -> None:
    """What an edge-only install (`uv sync --extra edge`) lacks is never imported by the install."""
    config = camera(tmp_path / "camera")
    probe = (
        "import sys\n"
        "from safepassage.cli.main import main\n"
        f"code = main(['edge', 'models', 'install', {str(archive)!r}, '--config', {str(config)!r}])\n"
        f"side = {SERVER_SIDE!r}\n"
        "bad = sorted(n for n in sys.modules if n in side or n.split('.')[0] in side)\n"
        "print(code, ','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "0", result.stdout
