"""The memory all requests together may spend on decoded images at once.

A 40-megapixel PNG of flat colour compresses to ~100 KB and takes ~400 MB to
decode; sixteen of them in flight took the server from 250 MB to 5 GB. Each
image request reserves its decode cost (read from the header, before any
pixel is decompressed: safepassage.face.ImageHeader.decode_bytes) for as long as its
pixels live (decoding and embedding), and waits up to ``wait_s`` when the
budget is spent; then it is refused with RESOURCE_EXHAUSTED and may retry.
An image that could never fit, even alone, is refused at once.

When the last reservation is released, freed heap is handed back to the
operating system (glibc's malloc_trim): without it, a burst of large images
left gigabytes resident in the allocator's arenas afterwards.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from safepassage.core.errors import TooLarge

__all__ = ["DecodeBudget", "DecodeBudgetExhausted", "ImageOverBudget"]

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# Trimming walks the heap: worth it after a large image, not after every camera frame.
_TRIM_AFTER_BYTES = 64 * MiB


class DecodeBudgetExhausted(TooLarge):
    """Other requests hold the decode budget; retry shortly."""


class ImageOverBudget(TooLarge):
    """This image alone would take more memory to decode than the server allows."""


class DecodeBudget:
    """A byte budget shared by every request that decodes an image (thread-safe)."""

    def __init__(self, capacity_bytes: int, wait_s: float) -> None:
        if capacity_bytes <= 0 or wait_s < 0:
            raise ValueError("the decode budget must be positive and the wait not negative")
        self.capacity_bytes = capacity_bytes
        self.wait_s = wait_s
        self._in_use = 0
        self._released_since_trim = 0
        self._changed = threading.Condition()
        self._trim = _malloc_trim()

    @property
    def in_use(self) -> int:
        with self._changed:
            return self._in_use

    @contextmanager
    def reserve(self, cost_bytes: int) -> Iterator[None]:
        """Hold ``cost_bytes`` of the budget for the block's duration."""
        if cost_bytes > self.capacity_bytes:
            raise ImageOverBudget(
                f"decoding this image takes about {cost_bytes // MiB} MiB; the server decodes at most"
                f" {self.capacity_bytes // MiB} MiB at once: send a smaller image"
            )
        self._acquire(cost_bytes)
        try:
            yield
        finally:
            self._release(cost_bytes)

    def _acquire(self, cost_bytes: int) -> None:
        deadline = time.monotonic() + self.wait_s
        with self._changed:
            while self._in_use + cost_bytes > self.capacity_bytes:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    log.info(
                        "decode budget spent: %d MiB in use, %d MiB asked",
                        self._in_use // MiB,
                        cost_bytes // MiB,
                    )
                    raise DecodeBudgetExhausted(
                        "the server is decoding other large images; retry shortly or send a smaller image"
                    )
                self._changed.wait(remaining)
            self._in_use += cost_bytes

    def _release(self, cost_bytes: int) -> None:
        with self._changed:
            self._in_use -= cost_bytes
            self._released_since_trim += cost_bytes
            idle = self._in_use == 0 and self._released_since_trim >= _TRIM_AFTER_BYTES
            if idle:
                self._released_since_trim = 0
            self._changed.notify_all()
        if idle and self._trim is not None:
            self._trim(0)


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim
