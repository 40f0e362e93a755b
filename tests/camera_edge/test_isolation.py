"""camera_edge runs on edge devices: it must not pull in the server side.

It runs the face pipeline of `safepassage.face`, so that room may load, but never dlib or
face_recognition (the reference backend's module imports them only when one is built).
"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

FORBIDDEN = (
    "dlib",
    "face_recognition",
    "face_recognition_models",
    "faiss",
    "pillow_heif",  # not in the edge extra: face's image module imports it on a HEIF image only
    "safepassage.matcher",
    "safepassage.enrolment",
    "safepassage.store",
    "safepassage.model_pack",
    "safepassage.server",
    "safepassage.app",
)


def test_camera_edge_imports_nothing_of_the_server_side() -> None:
    probe = (
        "import sys, pkgutil, importlib\n"
        "from safepassage import camera_edge, face\n"
        "for m in pkgutil.walk_packages(camera_edge.__path__, 'safepassage.camera_edge.'):\n"
        "    importlib.import_module(m.name)\n"
        "for m in pkgutil.walk_packages(face.__path__, 'safepassage.face.'):\n"
        "    importlib.import_module(m.name)\n"
        f"forbidden = {FORBIDDEN!r}\n"
        "bad = sorted(n for n in sys.modules if any(n == f or n.startswith(f + '.') for f in forbidden))\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", f"camera_edge imported server-side modules: {result.stdout.strip()}"
