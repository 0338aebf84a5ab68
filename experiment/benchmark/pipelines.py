"""Training-throughput section: images/s of the tutorial (torchvision) and tensor input pipelines.

The measuring is experiment.throughput.measure_pipelines' job (the training code owns the model and the
loaders); this file calls it per device, checks what came back and keeps the section honest when it can't
run: missing function -> "skipped" with the ImportError, a failure on one device -> "failed" with the error.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

PIPELINES = ("torchvision", "tensor")
METRICS = ("train_images_per_s", "eval_images_per_s")

MeasurePipelines = Callable[..., dict]


def _load_measure_pipelines() -> MeasurePipelines:
    from experiment.throughput import measure_pipelines  # lazy: the training package may be absent

    return measure_pipelines


def check_result(result: dict) -> None:
    """Raise ValueError naming the first missing or non-positive figure in measure_pipelines' answer."""
    for pipeline in PIPELINES:
        for metric in METRICS:
            value = result.get("median", {}).get(pipeline, {}).get(metric)
            if not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"measure_pipelines returned median.{pipeline}.{metric}={value!r}; expected > 0")


def run_throughput(devices: list[str], *, data_dir: Path | None, seed: int, **kwargs) -> dict:
    """{"status": ok|skipped|failed, "reason", "devices": {device: measure_pipelines' dict + status}}.

    Without data_dir, the synthetic full-size set is written once here and shared by every device,
    rather than once per device inside measure_pipelines."""
    if data_dir is not None or len(devices) < 2:
        return _run_throughput(devices, data_dir=data_dir, seed=seed, **kwargs)
    from experiment.synthetic import write_mnist

    with tempfile.TemporaryDirectory(prefix="gpulab-mnist-") as tmp:
        write_mnist(Path(tmp), 60000, 10000, seed=seed)
        return _run_throughput(devices, data_dir=Path(tmp), seed=seed, **kwargs)


def _run_throughput(
    devices: list[str],
    *,
    data_dir: Path | None,
    batch_size: int,
    test_batch_size: int,
    rounds: int,
    train_batches: int,
    eval_batches: int,
    seed: int,
    measure_pipelines: MeasurePipelines | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> dict:
    if measure_pipelines is None:
        try:
            measure_pipelines = _load_measure_pipelines()
        except ImportError as exc:
            return {
                "status": "skipped",
                "reason": f"experiment.throughput.measure_pipelines is not available ({type(exc).__name__}: {exc})",
                "devices": {},
            }
    per_device: dict[str, dict] = {}
    for device in devices:
        progress(f"throughput on {device}: {rounds} rounds × {train_batches} train + {eval_batches} eval batches")
        try:
            result = measure_pipelines(
                data_dir,
                device=device,
                batch_size=batch_size,
                test_batch_size=test_batch_size,
                rounds=rounds,
                train_batches=train_batches,
                eval_batches=eval_batches,
                seed=seed,
            )
            check_result(result)
        except Exception as exc:  # one device failing must not lose the other sections' numbers
            per_device[device] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
            progress(f"throughput on {device} failed: {type(exc).__name__}: {exc}")
            continue
        per_device[device] = {"status": "ok", **result}
    failed = [d for d, r in per_device.items() if r["status"] != "ok"]
    return {
        "status": "failed" if failed else "ok",
        "reason": f"failed on {', '.join(failed)}" if failed else None,
        "devices": per_device,
    }
