"""The matcher's limits on one call: what a caller may ask of it at once."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SearchLimits"]


@dataclass(frozen=True)
class SearchLimits:
    max_top_k: int = 100
    max_restrict_to: int = 10_000
    max_batch: int = 10_000
    max_captures: int = 10  # captures one subject may hold (their fusion is what is searched)
