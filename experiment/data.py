"""MNIST input: torchvision's dataset with the tutorial's normalisation, fed by one of two pipelines.

- "torchvision": the tutorial's DataLoader, a PIL image and two transforms per sample, collated per batch.
- "tensor": the whole split decoded once into one normalised float tensor on the device; an epoch is a
  random permutation of indices and each batch one index_select. Same values, same batches per epoch,
  no per-sample Python work.
"""

from __future__ import annotations

import gzip
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset
from torchvision import datasets, transforms

MEAN, STD = 0.1307, 0.3081
RAW_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class DataError(Exception):
    """The MNIST files are missing or unreadable; the message says which file and how to fix it."""


def raw_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "MNIST" / "raw"


def _missing_message(data_dir: Path, why: str) -> str:
    names = "\n".join(f"  {raw_dir(data_dir) / name}[.gz]" for names in RAW_FILES.values() for name in names)
    return (
        f"MNIST not found in --data-dir {data_dir} ({why}).\n"
        f"Put these four files there (from https://ossci-datasets.s3.amazonaws.com/mnist/ or any MNIST mirror;\n"
        f"gzipped or not):\n{names}\n"
        f"or run once with internet access (downloads automatically), or pass --data-dir pointing at a folder "
        f"that holds MNIST/raw/."
    )


def _gunzip_if_needed(raw: Path) -> None:
    """torchvision reads the uncompressed files (all four, whichever split is asked); users often drop in .gz."""
    for name in (*RAW_FILES[True], *RAW_FILES[False]):
        plain, packed = raw / name, raw / f"{name}.gz"
        if not plain.exists() and packed.exists():
            tmp = plain.with_suffix(".tmp")
            try:
                with gzip.open(packed, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            except (OSError, EOFError) as err:
                tmp.unlink(missing_ok=True)
                raise DataError(f"{packed} is not a readable gzip file ({err}); replace it with a fresh copy.") from err
            tmp.replace(plain)


def load_mnist(data_dir: Path, train: bool, *, download: bool = True, transform=None) -> datasets.MNIST:
    """torchvision's MNIST split from DATA_DIR/MNIST/raw, checked; DataError with the fix if absent or corrupt."""
    data_dir = Path(data_dir)
    raw = raw_dir(data_dir)
    _gunzip_if_needed(raw)
    present = all((raw / name).exists() for names in RAW_FILES.values() for name in names)
    if not present and not download:
        raise DataError(_missing_message(data_dir, "downloads are off"))
    try:
        dataset = datasets.MNIST(str(data_dir), train=train, download=download and not present, transform=transform)
    except (AssertionError, ValueError, TypeError, EOFError) as err:
        raise DataError(_corrupt_message(raw, train, err)) from err
    except (RuntimeError, OSError) as err:
        if present:
            raise DataError(_corrupt_message(raw, train, err)) from err
        raise DataError(_missing_message(data_dir, f"download failed, offline?: {str(err).splitlines()[0]}")) from err
    _check_shapes(dataset, raw, train)
    return dataset


def _corrupt_message(raw: Path, train: bool, err: Exception) -> str:
    files = ", ".join(str(raw / name) for name in RAW_FILES[train])
    detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    return (
        f"MNIST files are corrupt or truncated: {files} ({detail}).\n"
        f"Delete them and download again (or copy fresh ones from any MNIST mirror)."
    )


def _check_shapes(dataset: datasets.MNIST, raw: Path, train: bool) -> None:
    images, labels = dataset.data, dataset.targets
    image_file, label_file = (raw / name for name in RAW_FILES[train])
    if images.ndim != 3 or tuple(images.shape[1:]) != (28, 28) or len(images) == 0:
        raise DataError(
            f"{image_file} holds images of shape {tuple(images.shape)}, not N x 28 x 28; replace it with a fresh copy."
        )
    if len(labels) != len(images):
        raise DataError(
            f"{label_file} has {len(labels)} labels for {len(images)} images in {image_file}: one file is "
            f"truncated; replace both with fresh copies."
        )
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) > 9):
        raise DataError(f"{label_file} holds labels outside 0-9; replace it with a fresh copy.")


def tutorial_transform() -> transforms.Compose:
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])


def normalized_tensor(dataset: datasets.MNIST, device: torch.device, limit: int | None = None):
    """The split as (images N x 1 x 28 x 28 float, channels_last, on device; labels int64), same values as the
    tutorial's ToTensor + Normalize."""
    images, labels = dataset.data[:limit], dataset.targets[:limit]
    x = images.to(device).unsqueeze(1).float().div_(255).sub_(MEAN).div_(STD)
    return x.contiguous(memory_format=torch.channels_last), labels.to(device)


def shard_indices(n: int, rank: int, world_size: int, perm: torch.Tensor | None = None) -> torch.Tensor:
    """Rank's share of 0..n-1 (or of perm), padded like DistributedSampler so every rank runs the same steps."""
    order = perm if perm is not None else torch.arange(n)
    if world_size == 1:
        return order
    per_rank = math.ceil(n / world_size)
    padded = torch.cat([order, order[: per_rank * world_size - n]])
    return padded[rank::world_size]


def tensor_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of batches; shuffled (by generator) when one is given, else in order (evaluation)."""
    perm = torch.randperm(len(x), generator=generator) if generator is not None else None
    if perm is None and world_size > 1:  # evaluation: plain strided shard, no padding (no double counting)
        idx = torch.arange(rank, len(x), world_size)
    else:
        idx = shard_indices(len(x), rank, world_size, perm)
    idx = idx.to(x.device)
    for start in range(0, len(idx), batch_size):
        batch = idx[start : start + batch_size]
        yield x.index_select(0, batch), y.index_select(0, batch)


def num_batches(n: int, batch_size: int, world_size: int = 1) -> int:
    per_rank = math.ceil(n / world_size)
    return math.ceil(per_rank / batch_size)


def torchvision_loader(
    dataset,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
) -> DataLoader:
    """The tutorial's DataLoader (no workers, default collate); a DistributedSampler under torchrun."""
    if world_size > 1 and shuffle:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler)
    if world_size > 1:
        dataset = Subset(dataset, range(rank, len(dataset), world_size))
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator)
