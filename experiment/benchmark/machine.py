"""Facts about the machine a benchmark ran on, saved next to its numbers (no hostname, nothing secret)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys


def read_lscpu() -> dict[str, str]:
    """lscpu's 'Key: value' lines as a dict; empty where lscpu is missing (macOS, minimal containers)."""
    if shutil.which("lscpu") is None:
        return {}
    try:
        out = subprocess.run(
            ["lscpu"], capture_output=True, text=True, timeout=10, env={**os.environ, "LC_ALL": "C"}, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    facts = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            facts[key.strip()] = value.strip()
    return facts


def _nvidia_driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out.strip() else None


def gpu_unavailable_reason() -> str | None:
    """None when a CUDA GPU can be used, else a sentence saying why not."""
    import torch

    if torch.version.cuda is None:
        return f"this torch build ({torch.__version__}) has no CUDA support"
    if not torch.cuda.is_available():
        return (
            f"no CUDA device is visible (torch {torch.__version__} built for CUDA {torch.version.cuda}, "
            f"torch.cuda.device_count()={torch.cuda.device_count()})"
        )
    return None


def machine_facts(lscpu: dict[str, str] | None = None) -> dict:
    """CPU model, cores/threads, GPU name/driver/capability/memory, CUDA/cuDNN/torch/Python versions, load."""
    import torch

    lscpu = read_lscpu() if lscpu is None else lscpu
    cores = lscpu.get("Core(s) per socket")
    sockets = lscpu.get("Socket(s)")
    facts = {
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_cuda_build": torch.version.cuda,
        "cpu_model": lscpu.get("Model name") or platform.processor() or None,
        "cpu_logical": os.cpu_count(),
        "cpu_physical_cores": int(cores) * int(sockets) if cores and sockets and cores.isdigit() else None,
        "cpu_max_mhz": lscpu.get("CPU max MHz"),
        "cpu_vector_flags": sorted(set(lscpu.get("Flags", "").split()) & {"avx", "avx2", "fma", "avx512f"}),
        "hypervisor": lscpu.get("Hypervisor vendor"),
        "torch_threads": torch.get_num_threads(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "gpu": None,
    }
    if gpu_unavailable_reason() is None:
        props = torch.cuda.get_device_properties(0)
        facts["gpu"] = {
            "name": props.name,
            "count": torch.cuda.device_count(),
            "compute_capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "driver": _nvidia_driver(),
            "cudnn": torch.backends.cudnn.version(),
        }
    return facts
