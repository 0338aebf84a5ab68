"""`python -m experiment benchmark` / `python -m experiment.benchmark`: options, the run, the outputs."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from config import ExperimentConfig
from experiment.benchmark.machine import gpu_unavailable_reason, machine_facts, read_lscpu
from experiment.benchmark.matmul import run_matmul_suite
from experiment.benchmark.peaks import DTYPES, cpu_peak_estimate, gpu_peak, percent_of_peak
from experiment.benchmark.pipelines import MeasurePipelines, run_throughput
from experiment.benchmark.report import TUTORIAL, format_report, write_chart, write_json

_DEFAULTS = ExperimentConfig()
DEFAULT_SIZES = (1024, 2048, 4096, 10000)
QUICK_SIZES = (128, 256)
MAX_SIZE = 65536


@dataclass(frozen=True)
class BenchmarkSettings:
    """Everything a run depends on; saved as "config" in benchmark.json."""

    sizes: tuple[int, ...] = DEFAULT_SIZES
    dtypes: tuple[str, ...] = ("fp32",)
    repeats: int = 3
    gpu_repeats: int = 20
    max_case_seconds: float = 60.0
    warmup_max_seconds: float = 5.0
    device: str = "auto"
    throughput: bool = True
    data_dir: str | None = None
    throughput_rounds: int = 3
    train_batches: int = 50
    eval_batches: int = 5
    batch_size: int = _DEFAULTS.batch_size
    test_batch_size: int = _DEFAULTS.test_batch_size
    seed: int = _DEFAULTS.seed
    quick: bool = False


def _log(msg: str) -> None:
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_benchmark(
    settings: BenchmarkSettings,
    *,
    measure_pipelines: MeasurePipelines | None = None,
    progress=_log,
) -> dict:
    """Run every section and return the result dict that benchmark.json holds (writes nothing)."""
    import torch

    lscpu = read_lscpu()
    machine = machine_facts(lscpu)
    gpu_reason = gpu_unavailable_reason()
    if settings.device == "cuda" and gpu_reason:
        raise SystemExit(f"--device cuda: {gpu_reason}; use --device auto or cpu")
    devices = ["cpu"]
    if gpu_reason is None and settings.device != "cpu":
        devices.append("cuda")
        gpu_status = {"status": "measured", "reason": None}
    else:
        reason = "--device cpu was given" if gpu_reason is None else gpu_reason
        gpu_status = {"status": "skipped", "reason": reason}
    progress(f"devices: {', '.join(devices)}; CPU matmuls use torch's {torch.get_num_threads()} threads")

    started = time.perf_counter()
    cases = run_matmul_suite(
        devices=devices,
        dtypes=list(settings.dtypes),
        sizes=list(settings.sizes),
        repeats={"cpu": settings.repeats, "cuda": settings.gpu_repeats},
        max_case_seconds=settings.max_case_seconds,
        warmup_max_seconds=settings.warmup_max_seconds,
        progress=progress,
    )
    cpu_peak = cpu_peak_estimate(lscpu)
    peak = gpu_peak(machine["gpu"]["name"]) if machine.get("gpu") else None
    add_derived(cases, cpu_peak_tflops=cpu_peak["tflops"], gpu_peak_entry=peak)
    matmul_s = time.perf_counter() - started

    started = time.perf_counter()
    if settings.throughput:
        throughput = run_throughput(
            devices,
            data_dir=Path(settings.data_dir) if settings.data_dir else None,
            batch_size=settings.batch_size,
            test_batch_size=settings.test_batch_size,
            rounds=settings.throughput_rounds,
            train_batches=settings.train_batches,
            eval_batches=settings.eval_batches,
            seed=settings.seed,
            measure_pipelines=measure_pipelines,
            progress=progress,
        )
    else:
        throughput = {"status": "skipped", "reason": "--skip-throughput was given", "devices": {}}
    throughput_s = time.perf_counter() - started
    if hasattr(os, "getloadavg"):  # other work on the box during the run shows up as spread; say so
        machine["load_average_1m_end"] = round(os.getloadavg()[0], 2)

    return {
        "schema": "gpulab-benchmark/1",
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": asdict(settings),
        "machine": machine,
        "matmul": {
            "method": "inputs and output allocated on the device first; warm-up; CPU: time.perf_counter around "
            "torch.matmul(a, b, out=c) with torch's default threads; GPU: CUDA events + synchronize; "
            "fp32 with TF32 disabled, tf32 with torch.set_float32_matmul_precision('high')",
            "cpu_threads": torch.get_num_threads(),
            "gpu": gpu_status,
            "cpu_peak": cpu_peak,
            "gpu_peak": peak.as_dict() if peak else None,
            "cases": cases,
        },
        "throughput": throughput,
        "section_seconds": {"matmul": matmul_s, "throughput": throughput_s},
        "reference": {"tutorial": TUTORIAL},
    }


def add_derived(cases: list[dict], *, cpu_peak_tflops: float | None, gpu_peak_entry) -> None:
    """Percent of the device's peak and GPU speedup over CPU fp32 at the same n, in place."""
    cpu_median = {c["n"]: c["median_s"] for c in cases if c["status"] == "ok" and c["device"] == "cpu"}
    for c in cases:
        if c["status"] != "ok":
            continue
        if c["device"] == "cpu":
            c["peak_tflops"] = cpu_peak_tflops
        else:
            c["peak_tflops"] = gpu_peak_entry.tflops(c["dtype"]) if gpu_peak_entry else None
            c["speedup_vs_cpu_fp32"] = cpu_median[c["n"]] / c["median_s"] if c["n"] in cpu_median else None
        c["pct_of_peak"] = percent_of_peak(c["gflops_median"], c["peak_tflops"])


def _int_list(option: str, lo: int, hi: int):
    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{option} {text!r}: expected integers separated by commas, e.g. 1024,4096"
            ) from None
        if not values or any(not lo <= v <= hi for v in values):
            raise argparse.ArgumentTypeError(f"{option} {text!r}: each size must be between {lo} and {hi}")
        return tuple(sorted(set(values)))

    return parse


def _dtypes(text: str) -> tuple[str, ...]:
    values = tuple(v.strip().lower() for v in text.split(",") if v.strip())
    bad = [v for v in values if v not in DTYPES]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"--dtypes {text!r}: unknown {bad or 'empty'}; choose from {','.join(DTYPES)}")
    return tuple(dict.fromkeys(values))


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiment benchmark",
        description="CPU vs GPU matmul and MNIST training throughput, measured properly: inputs on the device "
        "before timing, a warm-up, synchronize before reading clocks, several repeats; median/min seconds, "
        "GFLOP/s (2n³/t), % of the device's dense peak, GPU/CPU speedup. Writes benchmark.json (config, "
        "machine facts, every raw timing) and benchmark.png to --output-dir and prints a table.",
        epilog="Default run: sizes 1024,2048,4096 and the tutorial's 10000, fp32, under ~2 minutes on a 2-core "
        "CPU (the 10000 CPU matmul dominates). Without a CUDA GPU the GPU side is skipped and the reason printed. "
        "Example on a GPU box: python -m experiment benchmark --dtypes fp32,tf32,bf16,fp16",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("runs/local"),
        help="where benchmark.json and benchmark.png go (default: %(default)s)",
    )
    parser.add_argument(
        "--sizes",
        type=_int_list("--sizes", 1, MAX_SIZE),
        default=None,
        help=f"matrix sizes n, comma-separated (default: {','.join(map(str, DEFAULT_SIZES))}; "
        f"--quick: {','.join(map(str, QUICK_SIZES))})",
    )
    parser.add_argument(
        "--dtypes",
        type=_dtypes,
        default=("fp32",),
        help="matmul dtypes, comma-separated from fp32,tf32,bf16,fp16 (default: fp32). tf32/bf16/fp16 "
        "are measured on GPU only, each reported and labelled separately",
    )
    parser.add_argument(
        "--repeats",
        type=_positive(int),
        default=None,
        help="timed CPU runs per case after the warm-up (default: 3; --quick: 2)",
    )
    parser.add_argument(
        "--gpu-repeats",
        type=_positive(int),
        default=None,
        help="timed GPU runs per case after the warm-up; GPU matmuls take milliseconds (default: 20; --quick: 2)",
    )
    parser.add_argument(
        "--max-case-seconds",
        type=_positive(float),
        default=60.0,
        help="cap a case's timed runs to about this many seconds, never below 2 runs "
        "(default: %(default)s; keeps the 10000 CPU case at ~2 runs on a small CPU)",
    )
    parser.add_argument(
        "--warmup-max-seconds",
        type=_positive(float),
        default=5.0,
        help="skip the same-size warm-up when one call is predicted (from the previous size, n³) "
        "to take longer; the previous size then served as warm-up (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="auto: CPU, plus the GPU when CUDA sees one; cpu: CPU only; cuda: fail if no GPU",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="seconds-long smoke run for tests/CI: tiny sizes, 2 repeats, 1 short throughput round",
    )
    parser.add_argument("--skip-throughput", action="store_true", help="matmul only")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="MNIST directory for the training-throughput section (default: a synthetic full-size MNIST-shaped set written to a temporary folder, so nothing is downloaded; throughput does not depend on the pixels)",
    )
    parser.add_argument(
        "--throughput-rounds",
        type=_positive(int),
        default=None,
        help="training-throughput rounds per device, median reported (default: 3; --quick: 1)",
    )
    parser.add_argument(
        "--train-batches",
        type=_positive(int),
        default=None,
        help="training batches timed per round (default: 50; --quick: 3)",
    )
    parser.add_argument(
        "--eval-batches",
        type=_positive(int),
        default=None,
        help="evaluation batches timed per round (default: 5; --quick: 1)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive(int),
        default=_DEFAULTS.batch_size,
        help="training batch size (default: %(default)s, as the tutorial)",
    )
    parser.add_argument(
        "--test-batch-size",
        type=_positive(int),
        default=None,
        help=f"evaluation batch size (default: {_DEFAULTS.test_batch_size}; --quick: 100)",
    )
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="seed (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def settings_from_args(args: argparse.Namespace) -> BenchmarkSettings:
    quick = args.quick

    def pick(value, normal, fast):
        return value if value is not None else (fast if quick else normal)

    return BenchmarkSettings(
        sizes=pick(args.sizes, DEFAULT_SIZES, QUICK_SIZES),
        dtypes=args.dtypes,
        repeats=pick(args.repeats, 3, 2),
        gpu_repeats=pick(args.gpu_repeats, 20, 2),
        max_case_seconds=args.max_case_seconds,
        warmup_max_seconds=args.warmup_max_seconds,
        device=args.device,
        throughput=not args.skip_throughput,
        data_dir=args.data_dir,
        throughput_rounds=pick(args.throughput_rounds, 3, 1),
        train_batches=pick(args.train_batches, 50, 3),
        eval_batches=pick(args.eval_batches, 5, 1),
        batch_size=args.batch_size,
        test_batch_size=pick(args.test_batch_size, _DEFAULTS.test_batch_size, 100),
        seed=args.seed,
        quick=quick,
    )


def main(argv: list[str] | None = None, *, measure_pipelines: MeasurePipelines | None = None) -> int:
    """Run the benchmark; 0 when every section measured or was skipped for a stated reason, 1 on a failure."""
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    progress = (lambda _msg: None) if args.quiet else _log
    result = run_benchmark(settings, measure_pipelines=measure_pipelines, progress=progress)
    result["command"] = ["python", "-m", "experiment", "benchmark", *(sys.argv[1:] if argv is None else argv)]
    json_path = write_json(result, args.output_dir / "benchmark.json")
    png_path = write_chart(result, args.output_dir / "benchmark.png")
    print(format_report(result))
    print(f"\nwrote {json_path} and {png_path}")
    failed = [c for c in result["matmul"]["cases"] if c["status"] == "failed"]
    return 1 if failed or result["throughput"]["status"] == "failed" else 0
