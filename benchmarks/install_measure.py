"""A cold install: what `make serve` and `make test` download, how long they take, what they leave on disk.

Each set is installed into a fresh copy of the project files (what a clean clone holds) with an
empty uv cache and an empty pip cache, so every package comes over the network from the registry:

- `before`: `make serve` before issue 17 (`--before-ref`): `uv sync --locked --all-extras` and the
  dev group, with that ref's `pyproject.toml` and `uv.lock`;
- `serve`: `make serve` now: `uv sync --locked` with the Makefile's `SERVER_SET`;
- `test`: `make test` now: `uv sync --locked --all-extras` and the dev group;

then the model-pack build (`python -m safepassage.model_pack.build`, one wheel downloaded with pip), and once
the uv bootstrap of a machine without uv (`python -m venv .tooling`, `pip install uv`).

`download_bytes` is what came over the network: for every distribution the venv ended up with,
the size uv.lock records for the file uv picks for this interpreter (the compatible wheel of
highest tag priority, else the sdist); the build tools uv fetches to build the project and the one
sdist (hatchling, setuptools: about 2 MB) are in no venv and not counted. `cache_bytes` and
`venv_bytes` are what the folders hold afterwards (uv keeps wheels unpacked; the venv is
hard-linked from the cache, so the two overlap).
Times depend on the network and on what else the machine runs: they are indicative.

    uv run python benchmarks/install_measure.py                  # about 5 minutes, 1 GB of downloads
    uv run python benchmarks/install_measure.py --sets serve --python /usr/bin/python3 --out /tmp/i.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "install.json"
# The last commit before issue 17's set-up change: `make serve` installed every extra and the dev tools.
BEFORE_REF = "4ecc60839f5f7b8f00ff7c3c92b612ed0e8ceeec"
SETS = ("before", "serve", "test")


def copy_working_tree(repo: Path, dest: Path) -> None:
    """Copy the files a clean clone would hold: tracked, plus untracked ones git does not ignore.

    On a clean checkout of a commit this is exactly the commit's tree; in a working tree it
    includes edits not yet committed, which `git clone` would miss.
    """
    listing = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listing.split("\0")):
        source = repo / name
        if not source.is_file():  # deleted in the working tree, not yet in the index
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target, follow_symlinks=False)


def server_set(makefile: Path) -> list[str]:
    """The `uv sync` flags `make serve` uses, read from the Makefile so the two cannot drift."""
    match = re.search(r"^SERVER_SET := (.+)$", makefile.read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit(f"{makefile}: no SERVER_SET line")
    return match.group(1).split()


def folder_bytes(folder: Path) -> int:
    """Apparent size of the files under `folder` (a hard-linked file is counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            stat = (Path(root) / name).lstat()
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total


def _expand_tags(filename: str) -> set[str]:
    python, abi, platforms = filename.removesuffix(".whl").split("-")[-3:]
    return {f"{p}-{a}-{s}" for p in python.split(".") for a in abi.split(".") for s in platforms.split(".")}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def download_bytes(lock: Path, venv_python: Path) -> tuple[int, int]:
    """(bytes, files) uv fetched for what `venv_python`'s venv holds, from the sizes in `lock`."""
    probe = (
        "import json, importlib.metadata as m; from packaging.tags import sys_tags;"
        "print(json.dumps({'tags': [str(t) for t in sys_tags()],"
        " 'dists': sorted({(d.metadata['Name'], d.version) for d in m.distributions()})}))"
    )
    seen = json.loads(subprocess.run([venv_python, "-c", probe], capture_output=True, check=True).stdout)
    priority = {tag: rank for rank, tag in enumerate(seen["tags"])}
    packages = {(_normal(p["name"]), p["version"]): p for p in tomllib.loads(lock.read_text())["package"]}
    total = files = 0
    for name, version in seen["dists"]:
        package = packages.get((_normal(name), version))
        if package is None or ("wheels" not in package and "sdist" not in package):
            continue  # the project itself, from its folder
        ranked = [
            (min(priority[t] for t in tags), wheel["size"])
            for wheel in package.get("wheels", [])
            if (tags := _expand_tags(wheel["url"].rsplit("/", 1)[1]) & priority.keys())
        ]
        total += min(ranked)[1] if ranked else package["sdist"]["size"]
        files += 1
    return total, files


@dataclass(frozen=True)
class SetResult:
    name: str
    what: str
    command: str
    files_from: str
    distributions: int
    download_bytes: int
    sync_s: float
    model_pack_s: float
    model_download_bytes: int
    total_s: float
    cache_bytes: int
    venv_bytes: int


@dataclass(frozen=True)
class Bootstrap:
    """`make serve` where uv is not on PATH: a private venv and pip install uv (cold pip cache)."""

    command: str
    seconds: float
    download_bytes: int
    tooling_bytes: int
    uv_version: str


def _environment(scratch: Path, uv: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV", "PIP_"))}
    env["UV_CACHE_DIR"] = str(scratch / "uv-cache")
    env["PIP_CACHE_DIR"] = str(scratch / "pip-cache")
    # The model build downloads its wheel with pip or, without one, `uv tool run`: this uv.
    env["PATH"] = f"{Path(uv).resolve().parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{(result.stderr or result.stdout)[-4000:]}")
    return time.perf_counter() - started


def measure_set(name: str, python: str, uv: str, before_ref: str) -> SetResult:
    with tempfile.TemporaryDirectory(prefix=f"install-{name}-") as folder:
        scratch = Path(folder)
        project = scratch / "project"
        copy_working_tree(REPO, project)
        files_from = "working tree"
        if name == "before":
            for file in ("pyproject.toml", "uv.lock"):
                text = subprocess.run(
                    ["git", "show", f"{before_ref}:{file}"], cwd=REPO, capture_output=True, check=True
                ).stdout
                (project / file).write_bytes(text)
            files_from = f"pyproject.toml and uv.lock at {before_ref}"
        flags = server_set(project / "Makefile") if name == "serve" else ["--all-extras"]
        command = [uv, "sync", "--locked", *flags, "--python", python]
        env = _environment(scratch, uv)
        log.info("%s: %s", name, " ".join(command))
        sync_s = _run(command, project, env)
        build = [
            uv,
            "run",
            "--no-sync",
            "python",
            "-m",
            "safepassage.model_pack.build",
            "--out",
            "var/models",
        ]
        model_pack_s = _run(build, project, env)
        download, distributions = download_bytes(project / "uv.lock", project / ".venv" / "bin" / "python")
        result = SetResult(
            name=name,
            what={
                "before": "make serve before issue 17: every extra and the dev tools",
                "serve": "make serve: the server extra and the model build (models), no dev tools",
                "test": "make test: every extra and the dev tools",
            }[name],
            command=(
                f"uv sync --locked {' '.join(flags)} --python {python};"
                " python -m safepassage.model_pack.build"
            ),
            files_from=files_from,
            distributions=distributions,
            download_bytes=download,
            sync_s=round(sync_s, 1),
            model_pack_s=round(model_pack_s, 1),
            model_download_bytes=folder_bytes(project / "var" / "models" / "cache"),
            total_s=round(sync_s + model_pack_s, 1),
            cache_bytes=folder_bytes(scratch / "uv-cache"),
            venv_bytes=folder_bytes(project / ".venv"),
        )
        log.info("%s: %s", name, result)
        return result


def measure_bootstrap(python: str) -> Bootstrap:
    with tempfile.TemporaryDirectory(prefix="install-bootstrap-") as folder:
        scratch = Path(folder)
        env = _environment(scratch, sys.executable)
        tooling = scratch / ".tooling"
        started = time.perf_counter()
        _run([python, "-m", "venv", str(tooling)], scratch, env)
        pip = [str(tooling / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
        _run([*pip, "--quiet", "uv>=0.5,<1"], scratch, env)
        seconds = time.perf_counter() - started
        version = subprocess.run(
            [tooling / "bin" / "uv", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        # pip keeps no copy of what it installed: the same wheel, fetched again, is the download.
        wheel = [*pip[:3], "download", "--no-deps", "--only-binary=:all:", "-d", str(scratch / "wheel")]
        _run([*wheel, f"uv=={version.split()[1]}"], scratch, env)
        return Bootstrap(
            command=f"{python} -m venv .tooling; .tooling/bin/python -m pip install 'uv>=0.5,<1'",
            seconds=round(seconds, 1),
            download_bytes=folder_bytes(scratch / "wheel"),
            tooling_bytes=folder_bytes(tooling),
            uv_version=version,
        )


def interpreter(python: str) -> dict[str, object]:
    probe = (
        "import json, sys, sysconfig, pathlib; print(json.dumps({'version': sys.version.split()[0],"
        " 'executable': sys.executable, 'externally_managed':"
        " (pathlib.Path(sysconfig.get_path('stdlib')) / 'EXTERNALLY-MANAGED').is_file()}))"
    )
    answer: dict[str, object] = json.loads(
        subprocess.run([python, "-c", probe], capture_output=True, check=True).stdout
    )
    return answer


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--python", default="/usr/bin/python3", help="default: the system's")
    parser.add_argument("--uv", default=shutil.which("uv") or "uv", help="the uv to measure with")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument("--before-ref", default=BEFORE_REF, help="the commit `before` installs")
    parser.add_argument("--no-bootstrap", action="store_true", help="skip the uv bootstrap measurement")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    names = [name for name in args.sets.split(",") if name]
    if unknown := set(names) - set(SETS):
        parser.error(f"unknown sets: {sorted(unknown)}")
    uv_version = subprocess.run([args.uv, "--version"], capture_output=True, text=True, check=True).stdout
    results = [measure_set(name, args.python, args.uv, args.before_ref) for name in names]
    bootstrap = None if args.no_bootstrap else measure_bootstrap(args.python)
    report = {
        "benchmark": "install",
        "command": " ".join(["uv run python benchmarks/install_measure.py", *(argv or sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "interpreter": interpreter(args.python),
        "uv": uv_version.strip(),
        "cold": "empty UV_CACHE_DIR and PIP_CACHE_DIR; packages from the registry (PyPI)",
        "note": "times are network-bound and were taken on a shared machine: indicative",
        "sets": {result.name: asdict(result) for result in results},
        "uv_bootstrap": asdict(bootstrap) if bootstrap else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for result in results:
        print(
            f"{result.name:<7} {result.download_bytes / 1e6:6.0f} MB ({result.distributions} files)"
            f"  {result.total_s:6.1f} s  venv {result.venv_bytes / 1e6:6.0f} MB"
            f"  cache {result.cache_bytes / 1e6:6.0f} MB"
        )
    if bootstrap:
        print(f"uv bootstrap {bootstrap.download_bytes / 1e6:.0f} MB, {bootstrap.seconds:.1f} s")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(main())
