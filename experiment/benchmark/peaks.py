"""Dense peak FLOP/s of the GPUs gpulab users meet, and an honest (or absent) CPU peak estimate.

"Percent of peak" only means something next to the right peak: GPU figures below are the vendors' dense
(non-sparse) numbers. NVIDIA's datasheets print tensor-core figures "with sparsity" (2:4 structured) for
Ampere and newer; those are halved here. FP32 is the plain CUDA-core figure, TF32/BF16/FP16 are tensor-core.
A CPU's peak can't be looked up in a table: it is estimated from lscpu's facts only when they are there.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

DTYPES = ("fp32", "tf32", "bf16", "fp16")


@dataclass(frozen=True)
class GpuPeak:
    """Dense peak TFLOP/s of one GPU model; None where the GPU has no such tensor-core mode."""

    name: str
    fp32: float
    tf32: float | None
    bf16: float | None
    fp16: float | None
    source: str

    def tflops(self, dtype: str) -> float | None:
        return getattr(self, dtype)

    def as_dict(self) -> dict:
        return asdict(self)


_SPARSE = "tensor-core figures are the datasheet's 'with sparsity' values halved"

# Ordered: more specific names first (H200 NVL before H200, A10G is not A100, L4 is not L40S).
GPU_PEAKS: tuple[tuple[str, GpuPeak], ...] = (
    (r"h200.*nvl", GpuPeak("H200 NVL", 60.0, 417.5, 835.5, 835.5, f"NVIDIA H200 datasheet (NVL); {_SPARSE}")),
    (r"h200", GpuPeak("H200 SXM", 67.0, 494.5, 989.5, 989.5, f"NVIDIA H200 datasheet (SXM); {_SPARSE}")),
    (r"h100.*nvl", GpuPeak("H100 NVL", 60.0, 417.5, 835.5, 835.5, f"NVIDIA H100 datasheet (NVL); {_SPARSE}")),
    (r"h100.*pcie", GpuPeak("H100 PCIe", 51.0, 378.0, 756.5, 756.5, f"NVIDIA H100 datasheet (PCIe); {_SPARSE}")),
    (r"h100", GpuPeak("H100 SXM", 67.0, 494.5, 989.5, 989.5, f"NVIDIA H100 datasheet (SXM); {_SPARSE}")),
    (r"a100", GpuPeak("A100", 19.5, 156.0, 312.0, 312.0, "NVIDIA A100 datasheet (dense column)")),
    (
        r"a10g",
        GpuPeak(
            "A10G",
            31.2,
            35.0,
            70.0,
            70.0,
            "AWS/NVIDIA EC2 G5 figures (NVIDIA publishes no public A10G datasheet; the A10G's tensor "
            "throughput is lower than the A10's); dense",
        ),
    ),
    (r"\bl4\b", GpuPeak("L4", 30.3, 60.0, 121.0, 121.0, f"NVIDIA L4 datasheet; {_SPARSE}")),
    (r"v100.*pcie", GpuPeak("V100 PCIe", 14.0, None, None, 112.0, "NVIDIA V100 datasheet (PCIe); no TF32/BF16")),
    (r"v100", GpuPeak("V100 SXM2", 15.7, None, None, 125.0, "NVIDIA V100 datasheet (SXM2); no TF32/BF16")),
    (r"\bt4\b", GpuPeak("T4", 8.1, None, None, 65.0, "NVIDIA T4 datasheet (FP16 mixed precision); no TF32/BF16")),
)


def gpu_peak(device_name: str) -> GpuPeak | None:
    """The table entry for a CUDA device name such as 'Tesla T4' or 'NVIDIA H100 80GB HBM3', else None."""
    lowered = device_name.lower()
    for pattern, peak in GPU_PEAKS:
        if re.search(pattern, lowered):
            return peak
    return None


def percent_of_peak(gflops: float, peak_tflops: float | None) -> float | None:
    """Measured GFLOP/s as a percentage of a peak given in TFLOP/s (None when the peak is unknown)."""
    if peak_tflops is None or peak_tflops <= 0:
        return None
    return 100.0 * gflops / (peak_tflops * 1000.0)


def cpu_peak_estimate(lscpu: dict[str, str]) -> dict:
    """Upper-bound FP32 peak from lscpu facts (physical cores × max MHz × FLOPs/cycle), or why it's unknown.

    FLOPs/cycle/core assumes two FMA units of the widest vector width the flags advertise: 64 with AVX-512
    (16 lanes × 2 ops × 2 units), 32 with AVX2+FMA. CPUs with a single 512-bit FMA unit, or AMD Zen 4's
    256-bit datapaths, reach half of the AVX-512 figure; all-core clocks are usually below max MHz.
    """
    flags = set(lscpu.get("Flags", "").split())
    max_mhz = _number(lscpu.get("CPU max MHz"))
    cores = _number(lscpu.get("Core(s) per socket"))
    sockets = _number(lscpu.get("Socket(s)"))
    if "avx512f" in flags:
        per_cycle, isa = 64, "avx512f (assumed 2 × 512-bit FMA units)"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, isa = 32, "avx2+fma (assumed 2 × 256-bit FMA units)"
    else:
        per_cycle, isa = None, None
    missing = [
        what
        for what, value in (
            ("'CPU max MHz' (virtual machines often hide it)", max_mhz),
            ("'Core(s) per socket'", cores),
            ("'Socket(s)'", sockets),
            ("an AVX2+FMA or AVX-512 flag", per_cycle),
        )
        if value is None
    ]
    if missing:
        return {"tflops": None, "reason": "unknown: lscpu does not report " + ", ".join(missing)}
    physical = int(cores * sockets)
    tflops = physical * max_mhz * 1e6 * per_cycle / 1e12
    return {
        "tflops": tflops,
        "reason": f"upper-bound estimate: {physical} physical cores × {max_mhz:.0f} MHz × {per_cycle} FP32 "
        f"FLOPs/cycle from {isa}",
    }


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None
