"""The machine under the scale benchmark: memory bandwidth, resident memory, FAISS threads, a description.

The bandwidth is the floor of an exact scan (bytes of the vectors / single-thread streaming
read rate); resident memory is read from /proc (Linux; zeros elsewhere).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from benchmarks.synthetic_templates import DIMENSION

MIB = 2**20
GIB = 2**30


def log(message: str) -> None:
    stamp = time.strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def faiss_threads(count: int) -> Iterator[None]:
    """OpenMP threads of the calling thread for builds and the ground truth; back to 1 after."""
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(1)


@dataclass(frozen=True)
class Bandwidth:
    """Single-thread streaming read rate: best of `repeats` full reads of a `bytes` array."""

    bytes: int
    repeats: int
    numpy_sum_gb_s: float  # numpy float32 sum
    faiss_norms_gb_s: float  # faiss fvec_norms_L2sqr over 128-d rows: the flat scan's own loop
    gb_s: float  # the better of the two: the bound uses the fastest read seen
    seconds: float


def memory_bandwidth(gib: float, repeats: int) -> Bandwidth:
    started = time.perf_counter()
    data = np.ones(int(gib * GIB) // 4, dtype=np.float32)  # written once, so every page is resident
    rows = len(data) // DIMENSION
    norms = np.empty(rows, dtype=np.float32)

    def best(read: Callable[[], object]) -> float:
        fastest = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            read()
            fastest = min(fastest, time.perf_counter() - start)
        return data.nbytes / fastest / 1e9

    numpy_rate = best(data.sum)
    faiss_rate = best(
        lambda: faiss.fvec_norms_L2sqr(  # type: ignore[attr-defined]
            faiss.swig_ptr(norms), faiss.swig_ptr(data), DIMENSION, rows
        )
    )
    return Bandwidth(
        bytes=data.nbytes,
        repeats=repeats,
        numpy_sum_gb_s=numpy_rate,
        faiss_norms_gb_s=faiss_rate,
        gb_s=max(numpy_rate, faiss_rate),
        seconds=time.perf_counter() - started,
    )


def status_bytes(name: str) -> int:
    """A /proc/self/status figure (VmRSS, VmHWM) in bytes; 0 where there is no /proc."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    """The process's peak resident memory, across restarts of the kernel's count (VmHWM)."""

    def __init__(self) -> None:
        self.seen = 0  # the highest count seen before the last restart

    def restart(self) -> bool:
        """Restart the kernel's count, so that the next peak is one stage's (Linux 4.0+)."""
        self.seen = max(self.seen, status_bytes("VmHWM"))
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def since_start(self) -> int:
        return max(self.seen, status_bytes("VmHWM"))


PEAK_RSS = PeakRss()


def available_memory() -> int:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor()


def machine_info() -> dict[str, object]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB, 1),
        "memory_available_gib_at_start": round(available_memory() / GIB, 1),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": faiss.__version__,
    }
