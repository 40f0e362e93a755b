"""The generated API package is exactly what scripts/generate_api.py makes from proto/."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_generated_api_is_not_stale() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/generate_api.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_package_is_named_proto() -> None:
    assert not (REPO / "proto" / "__init__.py").exists()
