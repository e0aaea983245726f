"""Benchmarks run by ``make bench``; each reports ratios against a baseline
measured in the same process, never absolute pass/fail timings."""
