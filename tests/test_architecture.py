"""Architecture rules that CI enforces: which room may import which, no cycles, one status per error.

The table below is the README's map of the code ("Layout"): a room of the `safepassage` package may
import only the rooms listed for it. A new import across rooms fails here until the map (and the
README) allows it; an allowance that nothing uses any more fails too, so the map stays honest.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import safepassage
from safepassage.core.errors import SafePassageError
from safepassage.server.errors import _STATUS, status_of
from tests.conftest import REPO

PACKAGE = REPO / "safepassage"

# Room -> the rooms it may import. `app` is the composition root (safepassage/app.py).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "api": frozenset(),
    "core": frozenset(),
    "credential": frozenset({"core"}),
    "store": frozenset({"core"}),
    "audit": frozenset({"core"}),
    "matcher": frozenset({"core", "store"}),
    # The face pipeline both sides run: the edge imports it, and nothing of the server side
    # (tests/camera_edge/test_isolation.py checks the running imports).
    "face": frozenset({"core"}),
    "camera_edge": frozenset({"core", "api", "credential", "face"}),
    "model_pack": frozenset({"core", "face"}),
    "enrolment": frozenset({"core", "store", "matcher", "credential"}),
    "evaluation": frozenset({"core", "camera_edge", "face", "store", "matcher"}),
    # ePassport chip data (DG1, DG2, SOD) and passive authentication: bytes in, values out.
    "travel_document": frozenset({"core"}),
    # The MOSIP ABIS adapter: its own process around the matcher, the face pipeline and the log.
    "abis": frozenset({"core", "store", "matcher", "face", "audit", "travel_document"}),
    "server": frozenset(
        {"core", "api", "store", "matcher", "face", "audit", "enrolment", "credential", "travel_document"}
        # The kiosk's capture quality and prompts, for the desk's webcam (server/capture_quality.py).
        | {"camera_edge"}
    ),
    # The web console: a client of the service (api), with no store, matcher or server inside.
    "console": frozenset({"core", "api"}),
    "app": frozenset({"store", "matcher", "server", "console"}),
    "cli": frozenset(
        {"core", "api", "audit", "enrolment", "credential", "face", "camera_edge", "model_pack", "server"}
        | {"app", "evaluation", "abis"}
    ),
}


def _room_files(room: str) -> list[Path]:
    single = PACKAGE / f"{room}.py"
    return [single] if single.is_file() else sorted((PACKAGE / room).rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module) for every absolute import in `path`."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "safepassage":  # from safepassage import store
                for alias in node.names:
                    yield node.lineno, f"safepassage.{alias.name}"
            else:
                yield node.lineno, node.module


def _rooms_imported(room: str) -> dict[str, list[str]]:
    """Room imported -> where (file:line), for every module of `room`; also 'benchmarks' and 'tests'."""
    found: dict[str, list[str]] = {}
    for path in _room_files(room):
        for line, module in _imports(path):
            parts = module.split(".")
            target = parts[1] if parts[0] == "safepassage" and len(parts) > 1 else parts[0]
            if parts[0] in {"benchmarks", "tests"} or (parts[0] == "safepassage" and target != room):
                found.setdefault(target, []).append(f"{path.relative_to(REPO)}:{line}")
    return found


def test_the_map_names_every_room() -> None:
    rooms = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    rooms |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert rooms == set(MAY_IMPORT), "a room is missing from (or extra in) the map"


def test_nothing_generic_is_installed_beside_the_package() -> None:
    top = {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file() or p.suffix == ".py"}
    assert top <= {"safepassage", "tests", "benchmarks"}, top


@pytest.mark.parametrize("room", sorted(MAY_IMPORT))
def test_a_room_imports_only_what_the_map_allows(room: str) -> None:
    imports = _rooms_imported(room)
    forbidden = {target: where for target, where in imports.items() if target not in MAY_IMPORT[room]}
    assert not forbidden, f"safepassage.{room} may not import {sorted(forbidden)}: {forbidden}"
    unused = MAY_IMPORT[room] - set(imports)
    assert not unused, f"the map allows {room} to import {sorted(unused)}, which it no longer does"


def test_the_package_root_imports_nothing() -> None:
    assert not list(_imports(PACKAGE / "__init__.py"))


def test_rooms_form_no_import_cycle() -> None:
    graph = {room: MAY_IMPORT[room] & set(_rooms_imported(room)) for room in MAY_IMPORT}
    state: dict[str, str] = {}

    def visit(room: str, path: tuple[str, ...]) -> None:
        if state.get(room) == "done":
            return
        assert state.get(room) != "open", f"import cycle: {' -> '.join((*path, room))}"
        state[room] = "open"
        for imported in sorted(graph[room]):
            visit(imported, (*path, room))
        state[room] = "done"

    for room in sorted(graph):
        visit(room, ())


def _all_error_classes() -> list[type[SafePassageError]]:
    for info in pkgutil.walk_packages(safepassage.__path__, "safepassage."):
        importlib.import_module(info.name)

    def below(cls: type[SafePassageError]) -> Iterator[type[SafePassageError]]:
        for sub in cls.__subclasses__():
            yield sub
            yield from below(sub)

    return sorted(set(below(SafePassageError)), key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def _raised_names() -> set[str]:
    """Names of every class raised anywhere in the product (`raise Name(...)`, `raise module.Name(...)`)."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                func = node.exc.func
                names.add(func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", ""))
    return names


def test_every_error_class_maps_to_exactly_one_grpc_status() -> None:
    errors = _all_error_classes()
    assert len(errors) > 50  # every room's errors were found, not just the categories
    categories = [category for category, _ in _STATUS]
    raised = _raised_names()
    for error in errors:
        if error in categories:
            continue
        name = f"{error.__module__}.{error.__qualname__}"
        under = [category for category in categories if issubclass(error, category)]
        if not under:
            # A grouping class (a room's root, SourceError, ...): raising it would answer INTERNAL.
            assert error.__subclasses__(), f"{name} is under no category and groups nothing"
            assert error.__name__ not in raised, f"{name} is raised but maps to no status"
            continue
        assert len(under) == 1, f"{name} is under {under}, not one category"
        assert status_of(error.__new__(error)) is not grpc.StatusCode.INTERNAL


def test_the_readme_map_says_what_the_contracts_enforce() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    layout = text[text.index("## Layout\n") : text.index("## Development\n")]
    rows: dict[str, frozenset[str]] = {}
    for line in layout.splitlines():
        if line.startswith("| `safepassage/"):
            room_cell, _, imports_cell = (cell.strip() for cell in line.strip("|").split("|"))
            room = room_cell.strip("`").removeprefix("safepassage/").rstrip("/").removesuffix(".py")
            names = frozenset(name.strip().strip("`") for name in imports_cell.split(","))
            rows[room] = frozenset() if names == {"nothing"} else names
    assert rows == MAY_IMPORT
