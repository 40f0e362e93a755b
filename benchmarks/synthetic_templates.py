"""Seeded synthetic 128-d face templates at any scale, shaped like dlib descriptors on LFW.

Real face embeddings are not uniform noise: people fall into population groups,
identity varies along far fewer than 128 effective directions, and two captures
of one face differ by capture noise whose size varies with the capture. The
model here has those three features:

    identity centre = cluster mean (one of `clusters` population clusters, drawn
                      with unequal weights) + a deviation with a decaying spectrum
                      (standard deviation of component j proportional to
                      j**-spectrum_decay), both in a random (Haar) orthonormal basis
                      so that no coordinate axis is special (SQ8 and PQ quantise per
                      coordinate: axis-aligned data would flatter them)
    capture         = centre + isotropic noise scaled per capture by a log-normal
                      quality factor (some captures are much worse than others)

The default scales put the distances where dlib's ResNet descriptor puts them on
LFW (../shared/data/faces/README.md: genuine pairs 0.447 on average, impostor
pairs 0.822, 2.9% of genuine pairs beyond the 0.6 threshold and 0.57% of
impostor pairs within it); `distance_stats` measures the generated set against
those figures, and the scale benchmark reports them.

A gallery of N templates holds N / samples_per_identity identities, each with
that many captures in consecutive rows (rows i*s .. i*s+s-1 are identity i).
Probes: a share are mated (a fresh capture of an enrolled identity), the rest
are captures of identities that are not enrolled.

Generation is seeded and chunked: identities are made CHUNK_IDENTITIES at a
time, each chunk from its own generator (seed, chunk number) and always whole,
straight into the preallocated gallery array (the last, partial chunk through a
chunk-sized buffer), so the only large allocation is the gallery itself (10M x
128 float32 = 5.1 GB) and, for a seed, a smaller gallery is a prefix of a larger
one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]

DIMENSION = 128
# Identities generated per chunk: fixed (not an option) so that a seed always
# gives the same data; 64k identities of 2 captures are 64 MiB of float32.
CHUNK_IDENTITIES = 65_536
MATCH_THRESHOLD = 0.6  # dlib's recommended L2 threshold

# dlib ResNet descriptor on the LFW subset in ../shared/data/faces (its README).
DLIB_LFW = {
    "genuine_mean": 0.447,
    "impostor_mean": 0.822,
    "genuine_above_threshold": 0.029,
    "impostor_below_threshold": 0.0057,
}

# Stream numbers of the seeded generators: each part of the data has its own.
_STREAM_POPULATION = 0
_STREAM_GALLERY = 1
_STREAM_STRANGERS = 2
_STREAM_PROBES = 3
_STREAM_STATS = 4


@dataclass(frozen=True)
class PopulationModel:
    """The generative model's parameters (defaults fitted to dlib on LFW, see module doc)."""

    dimension: int = DIMENSION
    clusters: int = 48
    # Dirichlet concentration of the cluster weights: low values make a few
    # population groups dominate, as in most real registries.
    cluster_weight_concentration: float = 1.0
    # Share of the identity-centre variance that lies between population clusters.
    cluster_share: float = 0.3
    spectrum_decay: float = 0.5
    # Root-mean-square distance between two identity centres (no capture noise).
    identity_distance: float = 0.70
    # Root-mean-square distance between two captures of one centre.
    capture_distance: float = 0.451
    # Standard deviation of the log of the per-capture noise factor.
    quality_sigma: float = 0.2


DEFAULT_MODEL = PopulationModel()


class Population:
    """The fixed part of the model for one seed: basis, spectrum, cluster means and weights."""

    def __init__(self, model: PopulationModel, seed: int) -> None:
        self.model = model
        d = model.dimension
        rng = np.random.default_rng([seed, _STREAM_POPULATION])
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        self.basis: Vectors = (q * np.sign(np.diag(r))).astype(np.float32)  # Haar orthonormal
        spectrum = np.arange(1, d + 1, dtype=np.float64) ** -model.spectrum_decay
        # E|a - b|^2 = 2 * sum(std^2) for two centres: scale the spectrum to identity_distance.
        spectrum *= model.identity_distance / np.sqrt(2.0 * np.sum(spectrum**2))
        self.within_std: Vectors = (spectrum * np.sqrt(1.0 - model.cluster_share)).astype(np.float32)
        between = spectrum * np.sqrt(model.cluster_share)
        offset = rng.standard_normal(d) * 0.05  # descriptors are not centred on the origin
        self.cluster_means: Vectors = (
            offset + (rng.standard_normal((model.clusters, d)) * between) @ self.basis
        ).astype(np.float32)
        self.cluster_weights = rng.dirichlet(np.full(model.clusters, model.cluster_weight_concentration))
        # The log-normal factor has mean square exp(2 sigma^2): divide it out so the
        # root-mean-square capture distance stays capture_distance.
        self.noise_std = float(model.capture_distance / np.sqrt(2.0 * d) / np.exp(model.quality_sigma**2))

    def centres(self, rng: np.random.Generator, count: int) -> Vectors:
        """`count` new identity centres."""
        clusters = rng.choice(self.model.clusters, size=count, p=self.cluster_weights)
        deviation = rng.standard_normal((count, self.model.dimension), dtype=np.float32)
        deviation *= self.within_std
        centres = deviation @ self.basis
        centres += self.cluster_means[clusters]
        return centres

    def capture_into(self, rng: np.random.Generator, out: Vectors, buffer: Vectors | None = None) -> None:
        """In place: add capture noise to `out` (rows already hold their identity centres)."""
        noise = buffer if buffer is not None and len(buffer) == len(out) else np.empty_like(out)
        rng.standard_normal(dtype=np.float32, out=noise)
        quality = rng.lognormal(0.0, self.model.quality_sigma, size=(len(out), 1)).astype(np.float32)
        noise *= quality * np.float32(self.noise_std)
        out += noise

    def captures(self, rng: np.random.Generator, centres: Vectors) -> Vectors:
        out = np.array(centres, dtype=np.float32, copy=True)
        self.capture_into(rng, out)
        return out


@dataclass(frozen=True)
class SyntheticSet:
    """A gallery and its probes. Gallery row r is template id r, of identity r // samples_per_identity."""

    templates: Vectors  # (size, d)
    ids: npt.NDArray[np.int64]  # (size,): 0 .. size-1
    probes: Vectors  # (queries, d)
    mates: npt.NDArray[np.int64]  # (queries,): enrolled identity of each probe, -1 when not enrolled
    samples_per_identity: int
    seed: int
    seconds: float  # to generate

    @property
    def size(self) -> int:
        return len(self.templates)

    @property
    def identities(self) -> int:
        return -(-self.size // self.samples_per_identity)

    def rows_of(self, identity: int) -> range:
        start = identity * self.samples_per_identity
        return range(start, min(start + self.samples_per_identity, self.size))


Progress = Callable[[int, int], None]  # (rows done, rows in all)


def generate(
    size: int,
    queries: int,
    seed: int,
    *,
    samples_per_identity: int = 2,
    mated_fraction: float = 0.5,
    model: PopulationModel = DEFAULT_MODEL,
    progress: Progress | None = None,
) -> SyntheticSet:
    """A seeded gallery of `size` templates and `queries` probes (`mated_fraction` of them mated)."""
    if size < 1 or queries < 0 or samples_per_identity < 1 or not 0.0 <= mated_fraction <= 1.0:
        raise ValueError("size >= 1, queries >= 0, samples_per_identity >= 1, 0 <= mated_fraction <= 1")
    started = time.perf_counter()
    population = Population(model, seed)
    s = samples_per_identity
    identities = -(-size // s)
    mated = min(round(queries * mated_fraction), identities)
    picker = np.random.default_rng([seed, _STREAM_PROBES])
    mated_identities = np.sort(picker.choice(identities, size=mated, replace=False)).astype(np.int64)

    templates = np.empty((size, model.dimension), dtype=np.float32)
    mated_probes = np.empty((mated, model.dimension), dtype=np.float32)
    chunk_rows = CHUNK_IDENTITIES * s
    noise = np.empty((min(chunk_rows, size), model.dimension), dtype=np.float32)
    partial: Vectors | None = None
    for chunk, first in enumerate(range(0, identities, CHUNK_IDENTITIES)):
        rng = np.random.default_rng([seed, _STREAM_GALLERY, chunk])
        # Always a whole chunk, so that the draws of identity i do not depend on the
        # gallery's size: a smaller gallery of the same seed is a prefix of a larger one.
        centres = population.centres(rng, CHUNK_IDENTITIES)
        target = templates[first * s : first * s + chunk_rows]
        if len(target) < chunk_rows:
            partial = np.empty((chunk_rows, model.dimension), dtype=np.float32)
            noise = np.empty_like(partial)
        rows = target if partial is None else partial
        for sample in range(s):
            rows[sample::s] = centres  # rows i*s .. i*s+s-1 are captures of identity i
        population.capture_into(rng, rows, noise)
        if partial is not None:
            target[:] = partial[: len(target)]
        lo, hi = np.searchsorted(mated_identities, [first, first + CHUNK_IDENTITIES])
        if hi > lo:
            mated_probes[lo:hi] = population.captures(rng, centres[mated_identities[lo:hi] - first])
        if progress is not None:
            progress(first * s + len(target), size)

    strangers_rng = np.random.default_rng([seed, _STREAM_STRANGERS])
    strangers = population.captures(strangers_rng, population.centres(strangers_rng, queries - mated))
    order = picker.permutation(queries)
    probes = np.concatenate([mated_probes, strangers])[order]
    mates = np.concatenate([mated_identities, np.full(queries - mated, -1, dtype=np.int64)])[order]
    return SyntheticSet(
        templates=templates,
        ids=np.arange(size, dtype=np.int64),
        probes=np.ascontiguousarray(probes),
        mates=mates,
        samples_per_identity=s,
        seed=seed,
        seconds=time.perf_counter() - started,
    )


@dataclass(frozen=True)
class DistanceStats:
    """Pairwise L2 distances of the generated set, to compare with dlib's on LFW (`reference`)."""

    threshold: float
    genuine_pairs: int  # two captures of one identity (mated probe and gallery, gallery and gallery)
    genuine_mean: float
    genuine_sd: float
    genuine_above_threshold: float  # share of genuine pairs beyond the threshold (a false non-match rate)
    impostor_pairs: int  # captures of two different identities
    impostor_mean: float
    impostor_sd: float
    impostor_below_threshold: float  # share of impostor pairs within the threshold (a false match rate)
    reference: dict[str, float]


def _distances(a: Vectors, b: Vectors) -> npt.NDArray[np.float64]:
    return np.asarray(np.linalg.norm(a.astype(np.float64) - b.astype(np.float64), axis=1))


def distance_stats(
    data: SyntheticSet, pairs: int = 20_000, threshold: float = MATCH_THRESHOLD
) -> DistanceStats:
    """Genuine and impostor distance statistics from a seeded sample of pairs (as LFW's pairs are)."""
    rng = np.random.default_rng([data.seed, _STREAM_STATS])
    genuine: list[npt.NDArray[np.float64]] = []
    mated = np.flatnonzero(data.mates >= 0)
    if len(mated):
        rows = np.array([data.rows_of(int(data.mates[q]))[0] for q in mated], dtype=np.int64)
        genuine.append(_distances(data.probes[mated], data.templates[rows]))
    s = data.samples_per_identity
    if s > 1:
        complete = data.size // s
        chosen = rng.choice(complete, size=min(pairs, complete), replace=False) * s
        genuine.append(_distances(data.templates[chosen], data.templates[chosen + 1]))
    a = rng.integers(0, data.size, size=pairs)
    b = rng.integers(0, data.size, size=pairs)
    different = (a // s) != (b // s)
    impostor = _distances(data.templates[a[different]], data.templates[b[different]])
    real = np.concatenate(genuine) if genuine else np.zeros(0)
    return DistanceStats(
        threshold=threshold,
        genuine_pairs=len(real),
        genuine_mean=float(real.mean()) if len(real) else float("nan"),
        genuine_sd=float(real.std()) if len(real) else float("nan"),
        genuine_above_threshold=float((real > threshold).mean()) if len(real) else float("nan"),
        impostor_pairs=len(impostor),
        impostor_mean=float(impostor.mean()),
        impostor_sd=float(impostor.std()),
        impostor_below_threshold=float((impostor <= threshold).mean()),
        reference=dict(DLIB_LFW),
    )
