"""Benchmarks run by `make bench`; each measures ours and the baseline side by side."""
