"""Fixtures for the faces tests. ``faces_dir`` (the real photos) is in tests/conftest.py."""

from __future__ import annotations

import pytest

from safepassage.face import DlibEmbedder


@pytest.fixture(scope="session")
def embedder() -> DlibEmbedder:
    # Loading and verifying the models takes about a second: once per session.
    return DlibEmbedder()
