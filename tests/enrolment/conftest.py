"""A vault file with two records (pr-1, pr-2), shared by the vault aggregates' tests.

Modules with a fixture of the same name (test_vault.py's own) keep theirs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from safepassage.enrolment.vault import RecordVault
from tests.enrolment.test_vault import _insert, _record


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "vault" / "records.sqlite3"


@pytest.fixture
def vault(path: Path) -> Iterator[RecordVault]:
    opened = RecordVault.open(path)
    _insert(opened, _record("pr-1"))
    _insert(opened, _record("pr-2"))
    yield opened
    opened.close()
