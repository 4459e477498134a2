"""smoothl1's benchmark suite: project tooling, not in the wheel (``python benchmarks/run.py``)."""
