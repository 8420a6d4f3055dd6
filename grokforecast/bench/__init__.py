"""Benchmarks: commands whose numbers go into BENCHMARKS.md, never asserted by tests."""
