"""Input-pipeline throughput: the tutorial's torchvision DataLoader against the on-device tensor pipeline.

Both pipelines train the same CNN (same seed, batch and optimizer) for the same number of steps and
evaluate the same number of batches; they alternate in one process over several rounds, after a
warm-up round, and the medians are compared, because shared machines are noisy.

    python -m experiment.throughput [--data-dir DIR] [--device cpu] [--rounds 3] [--train-batches 50]

A third, "resident" run trains on one batch that never leaves the device: no input pipeline at all,
so its images/s is the ceiling any pipeline can reach with this model, batch and optimizer.

Without --data-dir a full-size (60,000 + 10,000) synthetic MNIST-format set is written to a temporary
folder, so the real torchvision loading path (IDX files, PIL, transforms) runs either way.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
from pathlib import Path

import torch

from experiment import data as mnist
from experiment.runner import machine_facts, resolve_device
from experiment.train import Net, evaluate, train_one_epoch

PIPELINES = ("torchvision", "tensor")
RESIDENT = "resident"  # one batch reused on the device: the model-step ceiling, no input work


def _batches(name: str, split: dict, batch_size: int, n: int, generator: torch.Generator, shuffle: bool):
    if name == RESIDENT:
        x, y = split["tensor"]
        return itertools.repeat((x[:batch_size], y[:batch_size]), n)
    if name == "tensor":
        x, y = split["tensor"]
        batches = mnist.tensor_batches(x, y, batch_size, generator=generator if shuffle else None)
    else:
        batches = mnist.torchvision_loader(split["dataset"], batch_size, shuffle=shuffle, generator=generator)
    return itertools.islice(batches, n)


def _one_run(name, train, test, device, *, batch_size, test_batch_size, train_batches, eval_batches, seed) -> dict:
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = Net().to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    fit = train_one_epoch(
        model,
        _batches(name, train, batch_size, train_batches, generator, True),
        optimizer,
        device,
        log_interval=10**9,
    )
    ev = evaluate(model, _batches(name, test, test_batch_size, eval_batches, generator, False), device)
    return {
        "train_images_per_s": fit["images_per_s"],
        "eval_images_per_s": ev["images_per_s"],
        "accuracy": ev["accuracy"],
    }


def measure_pipelines(
    data_dir: Path | None,
    *,
    device: str = "cpu",
    batch_size: int = 64,
    test_batch_size: int = 1000,
    rounds: int = 3,
    train_batches: int = 50,
    eval_batches: int = 5,
    seed: int = 1,
) -> dict:
    """Median train/eval images/s of both pipelines over `rounds` alternating rounds, and tensor/torchvision ratios.

    data_dir None: synthesize a full-size MNIST-shaped IDX set in a temporary folder."""
    if data_dir is None:
        from experiment.synthetic import write_mnist

        with tempfile.TemporaryDirectory(prefix="gpulab-mnist-") as tmp:
            write_mnist(Path(tmp), 60000, 10000, seed=seed)
            return measure_pipelines(
                Path(tmp),
                device=device,
                batch_size=batch_size,
                test_batch_size=test_batch_size,
                rounds=rounds,
                train_batches=train_batches,
                eval_batches=eval_batches,
                seed=seed,
            )
    dev = resolve_device(device)
    splits = {}
    for key, is_train in (("train", True), ("test", False)):
        dataset = mnist.load_mnist(data_dir, is_train, download=False, transform=mnist.tutorial_transform())
        splits[key] = {"dataset": dataset, "tensor": mnist.normalized_tensor(dataset, dev)}
    kwargs = dict(
        batch_size=batch_size,
        test_batch_size=test_batch_size,
        train_batches=train_batches,
        eval_batches=eval_batches,
        seed=seed,
    )
    per_round = {name: {"train_images_per_s": [], "eval_images_per_s": []} for name in PIPELINES}
    accuracy = {name: [] for name in PIPELINES}
    resident = {"train_images_per_s": [], "eval_images_per_s": []}
    for name in (*PIPELINES, RESIDENT):  # warm-up: allocator, oneDNN/cuDNN kernel choice, page cache, lazy imports
        _one_run(name, splits["train"], splits["test"], dev, **{**kwargs, "train_batches": 5, "eval_batches": 1})
    for r in range(rounds):
        order = PIPELINES if r % 2 == 0 else PIPELINES[::-1]  # alternate who goes first: drift hits both alike
        for name in order:
            result = _one_run(name, splits["train"], splits["test"], dev, **kwargs)
            for key in ("train_images_per_s", "eval_images_per_s"):
                per_round[name][key].append(result[key])
            accuracy[name].append(result["accuracy"])
        result = _one_run(RESIDENT, splits["train"], splits["test"], dev, **kwargs)
        for key in resident:
            resident[key].append(result[key])
    median = {name: {k: statistics.median(v) for k, v in per_round[name].items()} for name in PIPELINES}
    return {
        "device": str(dev),
        "rounds": rounds,
        "batch_size": batch_size,
        "per_round": per_round,
        "median": median,
        "ratio": {
            "train": median["tensor"]["train_images_per_s"] / median["torchvision"]["train_images_per_s"],
            "eval": median["tensor"]["eval_images_per_s"] / median["torchvision"]["eval_images_per_s"],
        },
        "ceiling": {
            "what": "one resident batch, no input pipeline: the most any pipeline can reach here",
            "per_round": resident,
            "median": {k: statistics.median(v) for k, v in resident.items()},
        },
        # Same seed, same steps: both should land on (nearly) the same test accuracy on the evaluated batches.
        "accuracy": {name: statistics.median(v) for name, v in accuracy.items()},
        "settings": {
            "test_batch_size": test_batch_size,
            "train_batches": train_batches,
            "eval_batches": eval_batches,
            "seed": seed,
            "data_dir": str(data_dir),
        },
        "machine": machine_facts(dev),
    }


def format_table(result: dict) -> str:
    lines = [
        f"device {result['device']}, batch {result['batch_size']}, {result['rounds']} rounds (median)",
        f"{'pipeline':<12} {'train img/s':>12} {'eval img/s':>12} {'accuracy %':>11}",
    ]
    for name in PIPELINES:
        m = result["median"][name]
        lines.append(
            f"{name:<12} {m['train_images_per_s']:>12.0f} {m['eval_images_per_s']:>12.0f} "
            f"{result['accuracy'][name]:>11.2f}"
        )
    lines.append(
        f"ratio tensor/torchvision: train {result['ratio']['train']:.2f}x, eval {result['ratio']['eval']:.2f}x"
    )
    if "ceiling" in result:
        top = result["ceiling"]["median"]["train_images_per_s"]
        reached = {name: result["median"][name]["train_images_per_s"] / top for name in PIPELINES}
        lines.append(
            f"ceiling (one resident batch, no input work): train {top:.0f} img/s; "
            + ", ".join(f"{name} reaches {100 * share:.0f}%" for name, share in reached.items())
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiment.throughput", description=__doc__.split("\n\n")[1])
    parser.add_argument(
        "--data-dir", type=Path, help="MNIST folder (DIR/MNIST/raw); default: a synthetic full-size set"
    )
    parser.add_argument("--device", default="cpu", choices=["auto", "cuda", "mps", "cpu"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--test-batch-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train-batches", type=int, default=50)
    parser.add_argument("--eval-batches", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the full result here")
    args = parser.parse_args(argv)
    result = measure_pipelines(
        args.data_dir,
        device=args.device,
        batch_size=args.batch_size,
        test_batch_size=args.test_batch_size,
        rounds=args.rounds,
        train_batches=args.train_batches,
        eval_batches=args.eval_batches,
        seed=args.seed,
    )
    print(format_table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
