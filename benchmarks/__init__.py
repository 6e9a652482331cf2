"""The benchmark of sqlmodel-cache against the performance targets (``python benchmarks/bench.py``)."""
