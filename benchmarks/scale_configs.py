"""The scale benchmark's options and index configurations (--configs entries).

An entry names a family (flat, policy, sq8, pq, ivfflat) and may set build parameters
(nlist, hnsw_m, pq_m, train_size) and search parameters (nprobe, ef, rerank; several values
separated by '/', measured on one build). Unset parameters come from the index policy's
defaults at the gallery size (benchmarks/scale_benchmark.py describes the format).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.synthetic_templates import DIMENSION
from safepassage.matcher.approximate import ApproximateParams, Codes
from safepassage.matcher.index_policy import IndexPolicy

# Search settings swept on one build each: this data needs a large share of lists probed for
# recall@1 >= 0.99 (strangers have many near-equidistant neighbours).
DEFAULT_CONFIGS = ("flat", "sq8:nprobe=32/64/128/256/512", "pq:nprobe=64/128/256", "policy")
APPROXIMATE_CODES: dict[str, Codes] = {"sq8": "sq8", "pq": "pq", "ivfflat": "flat"}
BUILD_KEYS = {"nlist": "nlist", "hnsw_m": "hnsw_m", "pq_m": "pq_m", "train_size": "train_size"}
SEARCH_KEYS = {"nprobe": "nprobe", "ef": "quantizer_ef_search", "rerank": "rerank"}


@dataclass(frozen=True)
class ConfigSpec:
    """One --configs entry: a family and its parameter overrides (search ones may list values)."""

    text: str
    family: str  # flat | policy | sq8 | pq | ivfflat
    build: dict[str, Any] = field(default_factory=dict)
    search: dict[str, tuple[int, ...]] = field(default_factory=dict)


def parse_config(text: str) -> ConfigSpec:
    family, _, rest = text.partition(":")
    if family not in ("flat", "policy", *APPROXIMATE_CODES):
        raise argparse.ArgumentTypeError(f"unknown configuration {family!r} in {text!r}")
    build: dict[str, Any] = {}
    search: dict[str, tuple[int, ...]] = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            values = tuple(int(v.replace("_", "")) for v in value.split("/"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} in {text!r}: values are integers") from None
        if family in ("flat", "policy"):
            raise argparse.ArgumentTypeError(f"{family} takes no parameters ({text!r})")
        if key in BUILD_KEYS and len(values) == 1:
            build[BUILD_KEYS[key]] = values[0]
        elif key in SEARCH_KEYS:
            search[SEARCH_KEYS[key]] = values
        else:
            known = ", ".join([*BUILD_KEYS, *SEARCH_KEYS])
            raise argparse.ArgumentTypeError(f"{item!r} in {text!r}: keys are {known}; '/' for search ones")
    return ConfigSpec(text, family, build, search)


def policy_params(size: int) -> ApproximateParams | None:
    """What IndexPolicy (the defaults) plans at `size`: approximate parameters, or None for flat."""
    plan = IndexPolicy().plan(size, DIMENSION)
    return plan.params if plan.kind == "approximate" else None


def default_params(size: int, codes: Codes) -> ApproximateParams:
    """The policy's approximate parameters at `size` (with these codes), even below its exact_below."""
    return IndexPolicy(codes=codes).approximate_params(size)


def search_variants(spec: ConfigSpec, base: ApproximateParams) -> list[ApproximateParams]:
    """The entry's build parameters, then every combination of its search values.

    Unless the entry sets ef, it follows nprobe as the policy's does (twice nprobe, at least
    64): an HNSW quantizer searched with a smaller efSearch misses lists it should probe."""
    variants = [with_values(base, spec.build)]  # build parameters: one value each
    for key, values in spec.search.items():
        variants = [with_values(v, {key: value}) for v in variants for value in values]
    if "quantizer_ef_search" not in spec.search and "nprobe" in spec.search:
        variants = [with_values(v, {"quantizer_ef_search": max(64, 2 * v.nprobe)}) for v in variants]
    return variants


def params_name(params: ApproximateParams) -> str:
    codes = {v: k for k, v in APPROXIMATE_CODES.items()}[params.codes]
    pq = f" m{params.pq_m}" if params.codes == "pq" else ""
    return (
        f"{codes}{pq} nlist={params.nlist} nprobe={params.nprobe}"
        f" ef={params.quantizer_ef_search} rerank={params.rerank}"
    )


def with_values(params: ApproximateParams, values: Mapping[str, Any]) -> ApproximateParams:
    return dataclasses.replace(params, **values)


@dataclass(frozen=True)
class Options:
    sizes: list[int]
    queries: int
    configs: list[ConfigSpec]
    samples_per_identity: int
    batch: int
    time_limit: float
    build_threads: int
    bandwidth_gib: float
    bandwidth_repeats: int
    seed: int
    out: Path
    force: bool
    plan: bool


def ordered(configs: list[ConfigSpec]) -> list[ConfigSpec]:
    """Flat first (the others' speed-ups need its figures), policy last (it may reuse a build)."""
    rank = {"flat": 0, "policy": 2}
    return sorted(configs, key=lambda spec: rank.get(spec.family, 1))
