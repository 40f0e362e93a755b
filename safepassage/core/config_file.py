"""Reading a TOML configuration tree: the file, its relative paths, command-line overrides, validation.

The server and the edge each have one typed tree (pydantic models) loaded once
at start-up; this is the part they share: a file that cannot be read or
parsed, or a tree that fails validation, becomes one `InvalidInput` subclass
of the caller's choosing, with every problem named by its dotted key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from safepassage.core.errors import InvalidInput

Model = TypeVar("Model", bound=BaseModel)


def read_tree(path: Path, error: type[InvalidInput], what: str) -> dict[str, object]:
    """The TOML file as a dictionary; `error` names the file when it cannot be read or parsed."""
    try:
        return tomllib.loads(path.read_text())
    except OSError as problem:
        raise error(f"cannot read the {what} {path}: {problem.strerror}") from None
    except tomllib.TOMLDecodeError as problem:
        raise error(f"the {what} {path} is not valid TOML: {problem}") from None


def resolve_paths(raw: dict[str, object], base: Path, keys: Mapping[str, tuple[str, ...]]) -> None:
    """Make relative paths (`keys`: section -> path keys) relative to `base`, the file's folder.

    A section may be nested, named with dots ("matching.milvus")."""
    for section, names in keys.items():
        table: object = raw
        for part in section.split("."):
            table = table.get(part) if isinstance(table, dict) else None
        if isinstance(table, dict):
            for key in names:
                value = table.get(key)
                if isinstance(value, list):  # a list of paths (enrolment.agency_reader_keys)
                    table[key] = [_relative_to(base, item) for item in value]
                elif key in table:
                    table[key] = _relative_to(base, value)


def _relative_to(base: Path, value: object) -> object:
    """A relative path (a non-empty string) under `base`; anything else as it is, for validation."""
    if isinstance(value, str) and value and not Path(value).is_absolute():
        return str(base / value)
    return value


def apply_overrides(raw: dict[str, object], overrides: Mapping[str, object] | None) -> None:
    """``{"section.key": value}`` (sections may nest: ``"a.b.key"``; or a top-level ``"key"``)
    set over the file's values."""
    for dotted, value in (overrides or {}).items():
        *sections, key = dotted.split(".")
        target: object = raw
        for depth, section in enumerate(sections):
            if not isinstance(target, dict):
                break
            target = target.setdefault(section, {})
            if not isinstance(target, dict):
                where = ".".join(sections[: depth + 1])
                raise InvalidInput(f"cannot override {dotted}: {where} is not a section")
        if not isinstance(target, dict):
            raise InvalidInput(f"cannot override {dotted}: not a section")
        target[key] = value


def validate(model: type[Model], raw: dict[str, object], error: type[InvalidInput], what: str) -> Model:
    try:
        return model.model_validate(raw)
    except ValidationError as problem:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in problem.errors())
        raise error(f"invalid {what}: {problems}") from None
