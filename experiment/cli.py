"""`python -m experiment train|evaluate|predict|benchmark|all`: the tutorial's MNIST run from a shell.

Settings come from config.experiment.ExperimentConfig (the tutorial's defaults), then an optional
--config file (YAML or JSON, camelCase keys as in the stack file), then the flags given here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from config.experiment import ExperimentConfig

DEFAULTS = ExperimentConfig()
EXIT_ERROR, EXIT_USAGE = 1, 2
# CLI flag -> ExperimentConfig field; the flags default to None so "not given" keeps the file's value.
FLAG_FIELDS = (
    "epochs",
    "batch_size",
    "test_batch_size",
    "lr",
    "momentum",
    "seed",
    "loader",
    "device",
    "amp",
    "log_interval",
)


def _field_help(name: str) -> str:
    field = ExperimentConfig.model_fields[name]
    return f"{field.description} Default {getattr(DEFAULTS, name)!r} (config key {field.alias})."


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="YAML or JSON file of experiment settings (camelCase keys, e.g. batchSize: 128; a "
        "stack file's gpulab:experiment mapping also works). Flags given here override it.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("data"),
        metavar="DIR",
        help="Where MNIST lives: DIR/MNIST/raw/*-ubyte (torchvision's layout). Downloaded there "
        "if absent and online. Default ./data.",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("runs/mnist"),
        metavar="OUT",
        help="Run folder for checkpoint, model, figures, report and metrics.json. Default runs/mnist.",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="Never try to download MNIST; fail at once with where to put the files.",
    )
    parser.add_argument("--epochs", type=int, help=_field_help("epochs"))
    parser.add_argument("--batch-size", type=int, help=_field_help("batch_size"))
    parser.add_argument("--test-batch-size", type=int, help=_field_help("test_batch_size"))
    parser.add_argument("--lr", type=float, help=_field_help("lr"))
    parser.add_argument("--momentum", type=float, help=_field_help("momentum"))
    parser.add_argument("--seed", type=int, help=_field_help("seed"))
    parser.add_argument("--loader", choices=["tensor", "torchvision"], help=_field_help("loader"))
    parser.add_argument("--device", choices=["auto", "cuda", "mps", "cpu"], help=_field_help("device"))
    parser.add_argument("--amp", choices=["off", "fp16", "bf16"], help=_field_help("amp"))
    parser.add_argument("--log-interval", type=int, metavar="N", help=_field_help("log_interval"))
    parser.add_argument(
        "--resume",
        action="store_true",
        help="Continue from OUT/checkpoint.pt (same settings required); without one, start fresh.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Smoke run: 1 epoch (unless --epochs) on the first 1,280 training and 1,000 test images.",
    )
    parser.add_argument("--no-progress", action="store_true", help="No progress bars (log lines only).")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiment",
        description="Hands-on #2's MNIST CNN (2 conv + 2 fc, SGD) as a command. Under torchrun "
        "(`torchrun --nproc_per_node=N -m experiment train ...`) training uses DistributedDataParallel.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {
        "train": "train, evaluate after every epoch, save checkpoint, model, figures, report and metrics.json",
        "evaluate": "test loss and accuracy of a saved model (OUT/mnist_cnn.pt or --model); writes OUT/evaluation.json",
        "predict": "predict digits in PNG files, or in the first --count test images",
        "benchmark": "CPU vs GPU matmul and training-throughput benchmark (`benchmark --help` lists its options)",
        "all": "train (with evaluation, figures, report), then the benchmark, all into --output-dir",
    }
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        if name == "benchmark":
            p.add_argument("args", nargs=argparse.REMAINDER, help="options of the benchmark")
            continue
        _common(p)
        if name in ("evaluate", "predict"):
            p.add_argument("--model", type=Path, metavar="PATH", help="state_dict to load. Default OUT/mnist_cnn.pt.")
        if name == "predict":
            p.add_argument(
                "images",
                nargs="*",
                type=Path,
                metavar="PNG",
                help="digit images (any size; light backgrounds are inverted). None: use the test set.",
            )
            p.add_argument("--count", type=int, default=10, help="test images to predict when no PNG is given.")
    return parser


def read_config_file(path: Path) -> dict:
    """Settings from a YAML/JSON file; a stack file's `gpulab:experiment` (or `experiment`) mapping is unwrapped."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ValueError(f"--config {path}: cannot read it ({err.strerror}).") from err
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"--config {path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({err}).") from err
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ValueError(
            f"--config {path}: expected a mapping of settings (e.g. batchSize: 128), got {type(raw).__name__}."
        )
    if isinstance(raw.get("config"), dict):  # a whole Pulumi stack file
        raw = raw["config"]
    for key in ("gpulab:experiment", "experiment"):
        if isinstance(raw.get(key), dict):
            return raw[key]
    return raw


def _explain(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(settings)"
        value = f" = {e['input']!r}" if "input" in e and not isinstance(e["input"], dict) else ""
        lines.append(f"  - {key}{value}: {e['msg']}")
    return f"bad experiment settings from {source}:\n" + "\n".join(lines)


def resolve_config(args: argparse.Namespace) -> ExperimentConfig:
    """Defaults < --config file < flags. Raises ValueError naming the bad key and value."""
    base = {}
    if args.config is not None:
        raw = read_config_file(args.config)
        try:
            base = ExperimentConfig.model_validate(raw).model_dump()
        except ValidationError as err:
            raise ValueError(_explain(err, f"--config {args.config}")) from err
    flags = {name: getattr(args, name) for name in FLAG_FIELDS if getattr(args, name, None) is not None}
    if args.quick and "epochs" not in flags:
        flags["epochs"] = 1
    try:
        return ExperimentConfig.model_validate({**base, **flags})
    except ValidationError as err:
        raise ValueError(_explain(err, "the command line")).with_traceback(None) from err


def _train(args, cfg) -> dict:
    from experiment.runner import fit

    return fit(
        cfg,
        args.data_dir,
        args.output_dir,
        resume=args.resume,
        quick=args.quick,
        download=not args.no_download,
        progress=not args.no_progress,
    )


def _evaluate(args, cfg) -> int:
    from experiment.inference import evaluate_saved
    from experiment.runner import QUICK_TEST_IMAGES, atomic_write_json, resolve_device

    device = resolve_device(cfg.device)
    model = args.model or args.output_dir / "mnist_cnn.pt"
    result = evaluate_saved(
        model,
        args.data_dir,
        device,
        batch_size=cfg.test_batch_size,
        download=not args.no_download,
        limit=QUICK_TEST_IMAGES if args.quick else None,
    )
    print(
        f"Test set ({model}): average loss {result['loss']:.4f}, accuracy {result['correct']}/{result['images']} "
        f"({result['accuracy']:.2f}%), {result['images_per_s']:.0f} img/s on {device}"
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        args.output_dir / "evaluation.json",
        {
            "model": str(model),
            "device": device.type,
            "test_loss": result["loss"],
            "test_accuracy": result["accuracy"],
            "images": result["images"],
            "eval_images_per_s": result["images_per_s"],
        },
    )
    return 0


def _predict(args, cfg) -> int:
    import torch

    from experiment import data as mnist
    from experiment import report
    from experiment.inference import load_model, png_to_input, predict
    from experiment.runner import atomic_write_json, resolve_device

    device = resolve_device(cfg.device)
    model = load_model(args.model or args.output_dir / "mnist_cnn.pt", device)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    if args.images:
        inputs = torch.cat([png_to_input(p) for p in args.images])
        names, labels = [str(p) for p in args.images], [None] * len(args.images)
    else:
        test = mnist.load_mnist(args.data_dir, False, download=not args.no_download)
        inputs, targets = report.first_test_images(test, args.count)
        names, labels = [f"test[{i}]" for i in range(len(inputs))], [int(t) for t in targets]
    results = predict(model, inputs, device)
    for name, label, r in zip(names, labels, results, strict=True):
        truth = f" (label {label})" if label is not None else ""
        print(f"{name}: {r['digit']} (p={r['probability']:.3f}){truth}")
        r.update(input=name, label=label)
    report.digit_grid(args.output_dir / "predict.png", inputs, [f"Prediction: {r['digit']}" for r in results])
    atomic_write_json(args.output_dir / "predictions.json", results)
    return 0


def _benchmark(argv: list[str]) -> int:
    from experiment import benchmark

    return benchmark.main(argv) or 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["benchmark"]:  # its own parser, so `benchmark --help` explains its options
        return _benchmark(argv[1:])
    args = build_parser().parse_args(argv)

    from experiment.data import DataError
    from experiment.inference import ModelFileError
    from experiment.runner import RunError

    try:
        cfg = resolve_config(args)
        if args.command == "train":
            _train(args, cfg)
            return 0
        if args.command == "evaluate":
            return _evaluate(args, cfg)
        if args.command == "predict":
            return _predict(args, cfg)
        _train(args, cfg)  # all
        if int(os.environ.get("RANK", "0")) != 0:
            return 0  # under torchrun one benchmark is enough: rank 0's
        bench = ["--output-dir", str(args.output_dir), "--data-dir", str(args.data_dir)]
        bench += ["--device", "cpu"] if cfg.device == "cpu" else []
        return _benchmark([*bench, "--quick"] if args.quick else bench)
    except (ValueError, DataError, RunError, ModelFileError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
