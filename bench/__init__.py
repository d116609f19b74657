"""Benchmarks (run as scripts: ``python bench/critic_bench.py``); a package so tests import them by name."""
