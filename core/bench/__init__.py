"""Benchmarks run by ``agentry bench``."""
