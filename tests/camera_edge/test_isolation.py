"""camera_edge runs on edge devices: it must not pull in the server side."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

FORBIDDEN = (
    "dlib",
    "face_recognition",
    "face_recognition_models",
    "faiss",
    "matcher",
    "enrolment",
    "store",
    "faces",
    "model_pack",
    "server",
    "safepassage_server",
)


def test_camera_edge_imports_nothing_of_the_server_side() -> None:
    probe = (
        "import sys, pkgutil, importlib, camera_edge\n"
        "for m in pkgutil.walk_packages(camera_edge.__path__, 'camera_edge.'):\n"
        "    importlib.import_module(m.name)\n"
        f"bad = sorted(n for n in sys.modules if n.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"camera_edge imported server-side modules: {result.stdout.strip()}"
