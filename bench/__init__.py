"""Benchmarks run by ``make bench``; each writes its figures to ``bench/results/``."""
