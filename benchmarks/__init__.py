"""Benchmarks of the SafePassage service (see benchmarks/README.md)."""
