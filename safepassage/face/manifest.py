"""The model pack's manifest: what each model file is, where it came from, how to feed it.

A model pack is a folder holding model files and ``manifest.json``. Backends
are chosen from the manifest by explicit configuration and never guessed from
a graph. Loading a file goes through `ModelPack.path_of`, which refuses a
file whose sha256 differs from its entry.

    {"format": 1,
     "models": {
       "<name>": {
         "kind": "detector" | "landmarker" | "embedder",
         "name": "...", "version": "...", "file": "relative/path",
         "sha256": "<hex>", "licence": "SPDX id",
         "source": {"package": "...", "version": "...", "path": "..."},
         "params": {...}          # kind-specific, see below
       }}}

Embedder params: ``input_size`` [w, h], ``channel_order`` "RGB"|"BGR",
``mean`` [3 floats], ``std`` [3 floats] (pixels become (p - mean) / std),
``layout`` "NCHW"|"NHWC", ``output_dim``, ``metric`` "l2"|"cosine",
``default_threshold``, ``alignment`` "dlib_chip"|"arcface_112",
``chip_padding`` (dlib_chip only), ``input_name``, ``output_name``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from safepassage.core import atomic_file
from safepassage.face.errors import ManifestError, ModelFileMissing, ModelHashMismatch
from safepassage.face.model import file_sha256

MANIFEST_NAME = "manifest.json"
FORMAT = 1
Kind = Literal["detector", "landmarker", "embedder"]


@dataclass(frozen=True)
class ModelSource:
    package: str
    version: str
    path: str


@dataclass(frozen=True)
class ModelEntry:
    key: str
    kind: Kind
    name: str
    version: str
    file: str
    sha256: str
    licence: str
    source: ModelSource
    params: dict[str, Any] = field(default_factory=dict)

    def param(self, name: str) -> Any:
        try:
            return self.params[name]
        except KeyError:
            raise ManifestError(f"manifest entry {self.key!r} lacks params.{name}") from None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "version": self.version,
            "file": self.file,
            "sha256": self.sha256,
            "licence": self.licence,
            "source": {
                "package": self.source.package,
                "version": self.source.version,
                "path": self.source.path,
            },
            "params": self.params,
        }


def missing_pack_message(folder: Path) -> str:
    """What to do when ``folder`` holds no model pack: an edge box installs one, a server builds it."""
    return (
        f"no model pack in {folder} (no {MANIFEST_NAME}). On an edge box: make the archive where the pack"
        " is built (`safepassage models export --out models.tar`), copy it over and run"
        " `safepassage edge models install models.tar --config <camera.toml>`, which installs it into the"
        " camera's detection.model_dir. On a server checkout: `make models`."
    )


def _entry(key: str, raw: Any) -> ModelEntry:
    try:
        source = raw["source"]
        kind = raw["kind"]
        if kind not in ("detector", "landmarker", "embedder"):
            raise ManifestError(f"manifest entry {key!r} has unknown kind {kind!r}")
        return ModelEntry(
            key=key,
            kind=kind,
            name=str(raw["name"]),
            version=str(raw["version"]),
            file=str(raw["file"]),
            sha256=str(raw["sha256"]).lower(),
            licence=str(raw["licence"]),
            source=ModelSource(str(source["package"]), str(source["version"]), str(source["path"])),
            params=dict(raw.get("params", {})),
        )
    except (KeyError, TypeError) as error:
        raise ManifestError(f"manifest entry {key!r} is incomplete: missing {error}") from None


@dataclass(frozen=True)
class ModelPack:
    folder: Path
    models: dict[str, ModelEntry]

    @classmethod
    def load(cls, folder: Path) -> ModelPack:
        path = folder / MANIFEST_NAME
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise ManifestError(missing_pack_message(folder)) from None
        except (OSError, ValueError) as error:
            raise ManifestError(f"model manifest {path} is unreadable: {error}") from None
        if (
            not isinstance(raw, dict)
            or raw.get("format") != FORMAT
            or not isinstance(raw.get("models"), dict)
        ):
            raise ManifestError(f"model manifest {path} is not format {FORMAT}")
        return cls(folder, {key: _entry(key, value) for key, value in raw["models"].items()})

    def save(self) -> Path:
        path = self.folder / MANIFEST_NAME
        body = {"format": FORMAT, "models": {k: e.to_json() for k, e in sorted(self.models.items())}}
        # Atomic: a crash mid-write never leaves a manifest that names half a pack.
        atomic_file.replace(path, (json.dumps(body, indent=2, sort_keys=True) + "\n").encode(), mode=0o644)
        return path

    def entry(self, key: str) -> ModelEntry:
        try:
            return self.models[key]
        except KeyError:
            raise ManifestError(
                f"model {key!r} is not in the manifest at {self.folder / MANIFEST_NAME};"
                f" it has {sorted(self.models)}"
            ) from None

    def path_of(self, key: str) -> Path:
        """The verified path of a model file: present, and its sha256 as the manifest says."""
        entry = self.entry(key)
        path = self.folder / entry.file
        if not path.is_file():
            raise ModelFileMissing(f"model file {path} (manifest entry {key!r}) is missing")
        actual = file_sha256(path)
        if actual != entry.sha256:
            raise ModelHashMismatch(
                f"model file {path} has sha256 {actual}; its manifest entry {key!r} says {entry.sha256}"
            )
        return path
