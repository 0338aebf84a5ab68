"""Square matmul timing, done the way the tutorial's single `%time` is not: warm-up, synchronize, repeat.

Each case (device, dtype, n) allocates its inputs and its output on the device before any clock is read,
warms up (a same-size call, or the previous smaller size when one more large call would blow the time
budget), then times `torch.matmul(a, b, out=c)` several times. CPU calls use the threads torch would use
anyway (torch.get_num_threads()). GPU calls are timed with CUDA events and a synchronize.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

Progress = Callable[[str], None]

# GPU-only modes: TF32 is FP32 storage with tensor-core math (needs Ampere, compute capability 8.0).
_MIN_CAPABILITY = {"tf32": (8, 0), "bf16": (8, 0), "fp16": (7, 0)}


def flops(n: int) -> float:
    """Floating-point operations of one n×n by n×n matmul: n³ multiply-adds, 2n³ FLOPs."""
    return 2.0 * n**3


def summarize(times_s: list[float], n: int) -> dict:
    """Median, min, max, spread and GFLOP/s (2n³/t) of the timed repeats."""
    median = statistics.median(times_s)
    best = min(times_s)
    worst = max(times_s)
    return {
        "median_s": median,
        "min_s": best,
        "max_s": worst,
        "spread_pct": 100.0 * (worst - best) / median if median > 0 else 0.0,
        "gflops_median": flops(n) / median / 1e9,
        "gflops_best": flops(n) / best / 1e9,
    }


def unsupported_reason(device: str, dtype: str) -> str | None:
    """Why this (device, dtype) is not measured, or None when it is."""
    import torch

    if device == "cpu":
        return None if dtype == "fp32" else f"{dtype} is measured on GPU only (CPUs have no tensor cores)"
    major, minor = torch.cuda.get_device_capability(0)
    need = _MIN_CAPABILITY.get(dtype)
    if need and (major, minor) < need:
        return (
            f"{dtype} tensor cores need compute capability {need[0]}.{need[1]}+; "
            f"{torch.cuda.get_device_name(0)} is {major}.{minor}"
        )
    return None


def _free_bytes(device: str) -> int | None:
    import torch

    if device == "cuda":
        return torch.cuda.mem_get_info(0)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


@contextmanager
def _matmul_precision(dtype: str):
    """FP32 means true FP32 (no TF32 shortcut); TF32 is asked for explicitly; restore the old setting."""
    import torch

    old = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if dtype == "tf32" else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(old)


def _timer(device: str) -> Callable[[Callable[[], object]], float]:
    import torch

    if device == "cuda":

        def run_cuda(fn: Callable[[], object]) -> float:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000.0

        return run_cuda

    def run_cpu(fn: Callable[[], object]) -> float:
        begin = time.perf_counter()
        fn()
        return time.perf_counter() - begin

    return run_cpu


def time_matmul(
    n: int,
    *,
    device: str,
    dtype: str,
    repeats: int,
    max_case_seconds: float,
    warmup_max_seconds: float,
    predicted_s: float | None = None,
    warmed_by: str | None = None,
    progress: Progress = lambda _msg: None,
) -> dict:
    """Time one case; `predicted_s` (from the previous size) decides whether a same-size warm-up is affordable."""
    import torch

    label = f"{device} {dtype} n={n}"
    case = {"device": device, "dtype": dtype, "n": n, "repeats_requested": repeats}
    torch_dtype = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    need = 3 * n * n * torch.empty((), dtype=torch_dtype).element_size()
    free = _free_bytes(device)
    if free is not None and need > 0.9 * free:
        return {
            **case,
            "status": "skipped",
            "reason": f"needs {need / 2**30:.1f} GiB for a, b and c but {free / 2**30:.1f} GiB is free; "
            "pass smaller --sizes",
        }

    with _matmul_precision(dtype):
        generator = torch.Generator(device=device).manual_seed(n)
        a = torch.rand(n, n, device=device, dtype=torch_dtype, generator=generator)
        b = torch.rand(n, n, device=device, dtype=torch_dtype, generator=generator)
        c = torch.empty(n, n, device=device, dtype=torch_dtype)
        if device == "cuda":
            torch.cuda.synchronize()
        timed = _timer(device)

        def call() -> None:
            torch.matmul(a, b, out=c)

        if predicted_s is None or predicted_s <= warmup_max_seconds:
            progress(f"{label}: warm-up")
            case["warmup"] = {"kind": "same size", "seconds": timed(call)}
        else:
            case["warmup"] = {
                "kind": f"skipped: one call predicted {predicted_s:.1f} s > --warmup-max-seconds "
                f"{warmup_max_seconds:g}; {warmed_by} warmed up the threads and allocator",
                "seconds": None,
            }

        times: list[float] = []
        planned = repeats
        while len(times) < planned:
            progress(f"{label}: run {len(times) + 1}/{planned}" + ("" if not times else f" (last {times[-1]:.3g} s)"))
            times.append(timed(call))
            if len(times) == 1 and repeats > 1 and times[0] * repeats > max_case_seconds:
                planned = min(repeats, max(2, math.floor(max_case_seconds / times[0])))
                if planned < repeats:
                    case["repeats_capped"] = (
                        f"{repeats} runs of {times[0]:.1f} s would exceed --max-case-seconds {max_case_seconds:g}; "
                        f"ran {planned}"
                    )
        if not bool(torch.isfinite(c).all()):
            return {**case, "status": "failed", "reason": "the product has non-finite values", "times_s": times}
    progress(f"{label}: median {statistics.median(times):.4g} s over {len(times)} runs")
    return {**case, "status": "ok", "repeats_done": len(times), "times_s": times, **summarize(times, n)}


def run_matmul_suite(
    *,
    devices: list[str],
    dtypes: list[str],
    sizes: list[int],
    repeats: dict[str, int],
    max_case_seconds: float,
    warmup_max_seconds: float,
    progress: Progress = lambda _msg: None,
) -> list[dict]:
    """All cases, sizes ascending per (device, dtype) so each size's time predicts the next one's.

    `repeats` is per device: a GPU matmul takes milliseconds, so it can afford many more runs than the CPU.
    """
    import torch

    cases = []
    for device in devices:
        for dtype in dtypes:
            reason = unsupported_reason(device, dtype)
            if reason:
                cases.append({"device": device, "dtype": dtype, "n": None, "status": "skipped", "reason": reason})
                continue
            previous: dict | None = None
            for n in sorted(sizes):
                predicted = None
                if previous is not None and previous.get("status") == "ok":
                    predicted = previous["median_s"] * (n / previous["n"]) ** 3
                warmed_by = f"the n={previous['n']} case" if previous else None
                previous = time_matmul(
                    n,
                    device=device,
                    dtype=dtype,
                    repeats=repeats[device],
                    max_case_seconds=max_case_seconds,
                    warmup_max_seconds=warmup_max_seconds,
                    predicted_s=predicted,
                    warmed_by=warmed_by,
                    progress=progress,
                )
                cases.append(previous)
                if device == "cuda":
                    torch.cuda.empty_cache()  # the case's tensors are gone; give their memory back before the next
    return cases
