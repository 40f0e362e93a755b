"""Fixtures for the store tests: a real key, a real SQLite file, real encryption."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from safepassage.store import TemplateSealer, TemplateStore
from tests.store.store_helpers import DIMENSION, make_record, vector_for


@pytest.fixture
def key() -> bytes:
    return TemplateSealer.generate_key()


@pytest.fixture
def sealer(key: bytes) -> TemplateSealer:
    return TemplateSealer(key)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "templates.db"


@pytest.fixture
def template_store(db_path: Path, sealer: TemplateSealer) -> Iterator[TemplateStore]:
    with TemplateStore.open(db_path, sealer) as opened:
        yield opened


@pytest.fixture
def gallery(template_store: TemplateStore) -> str:
    template_store.galleries.create(make_record("g"))
    return "g"


@pytest.fixture
def items() -> Callable[..., list[tuple[str, npt.NDArray[np.float32]]]]:
    """items(prefix, n, dimension) -> [(reference_id, vector)] with deterministic vectors."""

    def build(prefix: str, n: int, dimension: int = DIMENSION) -> list[tuple[str, npt.NDArray[np.float32]]]:
        refs = [f"{prefix}-{i:05d}" for i in range(n)]
        return [(ref, vector_for(ref, dimension)) for ref in refs]

    return build
