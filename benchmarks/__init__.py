"""Benchmarks: scripts that print numbers (run explicitly; never part of scripts/test)."""
