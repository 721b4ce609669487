"""Kontakt's benchmark suite: every figure beside a baseline measured in the same run.

Run them all with `python -m bench.run`; see docs/benchmarks.md.
"""
