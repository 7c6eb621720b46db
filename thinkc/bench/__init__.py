"""Benchmarks behind `thinkc bench` (one module per target; results as rows of dicts)."""
