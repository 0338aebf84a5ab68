"""Benchmarks: CPU vs GPU matmul and MNIST training throughput (`python -m experiment benchmark`).

The experiment CLI calls `main(argv)` lazily; `python -m experiment.benchmark` runs it directly.
"""

from experiment.benchmark.cli import BenchmarkSettings, main, run_benchmark

__all__ = ["BenchmarkSettings", "main", "run_benchmark"]
