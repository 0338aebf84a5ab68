"""Tiny MNIST-format IDX files for tests: `write_mnist(root, n_train, n_test)` -> root, ready as --data-dir.

The writer lives in the package (experiment.synthetic) because the throughput script also needs a
full-size synthetic set on machines without MNIST; this module is the tests' stable import point.
"""

from __future__ import annotations

from pathlib import Path

from experiment.synthetic import FILES, make_split
from experiment.synthetic import write_mnist as _write_mnist

__all__ = ["FILES", "make_split", "write_mnist"]


def write_mnist(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Write root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (learnable synthetic digits); return root."""
    return _write_mnist(root, n_train, n_test, seed=seed)
