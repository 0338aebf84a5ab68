"""A small, learnable MNIST look-alike in torchvision's raw IDX layout, for tests, notebooks and benchmarks.

Each class is a fixed pattern of a few bright strokes; a sample is its class pattern, shifted by up to
two pixels, dimmed a little and overlaid with noise. A CNN separates the classes within a few dozen
SGD steps, so a test can demand accuracy far above chance (10%) without real MNIST (no internet here).
The files are read by the real `torchvision.datasets.MNIST(..., download=False)`.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

SIZE = 28
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _prototypes() -> np.ndarray:
    """Ten fixed 28x28 patterns (independent of the seed, so train and test share them)."""
    rng = np.random.default_rng(12345)
    protos = np.zeros((10, SIZE, SIZE), dtype=np.float32)
    for c in range(10):
        for _ in range(3):  # three strokes per class: horizontal or vertical bars at class-specific spots
            r, k = rng.integers(5, 23, size=2)
            length = rng.integers(6, 14)
            if rng.random() < 0.5:
                protos[c, r - 1 : r + 2, max(0, k - length // 2) : k + length // 2] = 1.0
            else:
                protos[c, max(0, r - length // 2) : r + length // 2, k - 1 : k + 2] = 1.0
    return protos


def make_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n images (uint8, n x 28 x 28) and labels (uint8) drawn from the class patterns."""
    rng = np.random.default_rng(seed)
    protos = _prototypes()
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = np.empty((n, SIZE, SIZE), dtype=np.float32)
    shifts = rng.integers(-2, 3, size=(n, 2))
    # Vectorised per shift: 25 groups instead of n np.roll calls, so a full-size set takes about a second.
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            idx = np.flatnonzero((shifts[:, 0] == dy) & (shifts[:, 1] == dx))
            images[idx] = np.roll(protos[labels[idx]], (dy, dx), axis=(1, 2))
    images *= rng.uniform(0.6, 1.0, size=(n, 1, 1)).astype(np.float32) * 255
    images += rng.uniform(0, 70, size=images.shape).astype(np.float32)
    return np.clip(images, 0, 255).astype(np.uint8), labels


def write_idx_images(path: Path, images: np.ndarray) -> None:
    n, rows, cols = images.shape
    path.write_bytes(struct.pack(">IIII", 0x00000803, n, rows, cols) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes())


def write_mnist(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Write root/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte; return root (the --data-dir)."""
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n, split_seed in (("train", n_train, seed), ("test", n_test, seed + 1)):
        images, labels = make_split(n, split_seed)
        image_file, label_file = FILES[split]
        write_idx_images(raw / image_file, images)
        write_idx_labels(raw / label_file, labels)
    return Path(root)
