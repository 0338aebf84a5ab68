"""Renders a benchmark result: the terminal table, benchmark.json and the bar chart, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from experiment.benchmark.pipelines import PIPELINES

# The tutorial's one-shot `%time` of a 10000×10000 fp32 matmul on a g4dn.xlarge (no warm-up, one run).
TUTORIAL = {
    "machine": "AWS g4dn.xlarge (4 vCPU Intel Xeon, NVIDIA T4)",
    "method": "Jupyter %time, one run, no warm-up",
    "n": 10000,
    "dtype": "fp32",
    "cpu_s": 5.8,
    "gpu_s": 0.553,
}


@contextmanager
def _atomic_path(path: Path) -> Iterator[Path]:
    """A temporary sibling of `path` that replaces it only once fully written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; the result should read like any file the user writes
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(result: dict, path: Path) -> Path:
    with _atomic_path(path) as tmp:
        tmp.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path


def _fmt(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "-" * len(line)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return out


def format_report(result: dict) -> str:
    """The human-readable summary printed at the end of a run."""
    m = result["machine"]
    gpu = m.get("gpu")
    mm = result["matmul"]
    lines = [
        "gpulab benchmark",
        f"  CPU: {m.get('cpu_model')} ({m.get('cpu_physical_cores')} cores, {m.get('cpu_logical')} threads; "
        f"torch uses {m.get('torch_threads')}), load avg {m.get('load_average_1m')}",
        "  GPU: "
        + (
            f"{gpu['name']} (cc {gpu['compute_capability']}, {gpu['memory_gib']} GiB, driver {gpu['driver']})"
            if gpu
            else "none"
        ),
        f"  torch {m['torch']} (CUDA build {m['torch_cuda_build']}), Python {m['python']}, {m['os']}",
        "",
        "Matmul (n×n @ n×n, 2n³ FLOPs; median and min of the timed runs after warm-up)",
    ]
    rows = []
    for c in mm["cases"]:
        if c["status"] != "ok":
            continue
        rows.append(
            [
                c["device"],
                c["dtype"],
                str(c["n"]),
                str(c["repeats_done"]),
                f"{c['median_s']:.4g}",
                f"{c['min_s']:.4g}",
                f"{c['spread_pct']:.1f}",
                f"{c['gflops_median']:.1f}",
                _fmt(c.get("pct_of_peak"), ".1f", "unknown"),
                _fmt(c.get("speedup_vs_cpu_fp32"), ".1f"),
            ]
        )
    headers = ["device", "dtype", "n", "runs", "median s", "min s", "spread %", "GFLOP/s", "% peak", "× CPU fp32"]
    lines += ["  " + row for row in _table(headers, rows)]
    lines.append(f"  CPU peak: {mm['cpu_peak']['reason']}")
    if mm.get("gpu_peak"):
        lines.append(f"  GPU peak: {mm['gpu_peak']['name']} from {mm['gpu_peak']['source']}")
    for c in mm["cases"]:
        if c["status"] != "ok":
            where = f"{c['device']} {c['dtype']}" + (f" n={c['n']}" if c.get("n") else "")
            lines.append(f"  {c['status']}: {where}: {c['reason']}")
    if mm["gpu"]["status"] == "skipped":
        lines.append(f"  GPU side skipped: {mm['gpu']['reason']}")
    t = TUTORIAL
    lines += [
        f"  Tutorial, for comparison: n={t['n']} {t['dtype']} on {t['machine']}: CPU {t['cpu_s']} s, "
        f"GPU {t['gpu_s'] * 1000:.0f} ms ({t['method']})",
        "",
        "Training throughput (images/s, median over rounds)",
    ]
    tp = result["throughput"]
    if tp["status"] == "skipped":
        lines.append(f"  skipped: {tp['reason']}")
    rows = []
    for device, r in tp.get("devices", {}).items():
        if r["status"] != "ok":
            lines.append(f"  {device}: failed: {r['error']}")
            continue
        for pipeline in PIPELINES:
            med = r["median"][pipeline]
            rows.append(
                [device, pipeline, f"{med['train_images_per_s']:.0f}", f"{med['eval_images_per_s']:.0f}", "", ""]
            )
        rows.append([device, "tensor/torchvision", "", "", f"{r['ratio']['train']:.2f}", f"{r['ratio']['eval']:.2f}"])
    if rows:
        lines += ["  " + row for row in _table(["device", "pipeline", "train", "eval", "train ×", "eval ×"], rows)]
    return "\n".join(lines)


def write_chart(result: dict, path: Path) -> Path:
    """Bar chart: matmul GFLOP/s per size and (device, dtype); training images/s per pipeline. Log scales."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [c for c in result["matmul"]["cases"] if c["status"] == "ok"]
    series = sorted({(c["device"], c["dtype"]) for c in ok})
    sizes = sorted({c["n"] for c in ok})
    fig, (ax_mm, ax_tp) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})

    width = 0.8 / max(1, len(series))
    for i, (device, dtype) in enumerate(series):
        values = {c["n"]: c["gflops_median"] for c in ok if (c["device"], c["dtype"]) == (device, dtype)}
        xs = [j + i * width for j, n in enumerate(sizes) if n in values]
        bars = ax_mm.bar(xs, [values[n] for n in sizes if n in values], width, label=f"{device} {dtype}")
        ax_mm.bar_label(bars, fmt="%.0f", fontsize=7)
    ax_mm.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(sizes))], [str(n) for n in sizes])
    ax_mm.set_xlabel("matrix size n (n×n @ n×n)")
    ax_mm.set_ylabel("GFLOP/s (median run, log scale)")
    ax_mm.set_yscale("log")
    ax_mm.set_title("Matmul throughput")
    if series:
        ax_mm.legend(fontsize=8)
    if result["matmul"]["gpu"]["status"] == "skipped":
        ax_mm.text(0.01, 0.98, "GPU skipped: no CUDA device", transform=ax_mm.transAxes, va="top", fontsize=8)

    tp = result["throughput"]
    labels, train, evals = [], [], []
    for device, r in tp.get("devices", {}).items():
        if r["status"] == "ok":
            for pipeline in PIPELINES:
                labels.append(f"{device}\n{pipeline}")
                train.append(r["median"][pipeline]["train_images_per_s"])
                evals.append(r["median"][pipeline]["eval_images_per_s"])
    if labels:
        xs = range(len(labels))
        ax_tp.bar([x - 0.2 for x in xs], train, 0.4, label="train")
        ax_tp.bar([x + 0.2 for x in xs], evals, 0.4, label="eval")
        ax_tp.set_xticks(list(xs), labels, fontsize=8)
        ax_tp.set_yscale("log")
        ax_tp.set_ylabel("images/s (median round, log scale)")
        ax_tp.legend(fontsize=8)
    else:
        reason = tp.get("reason") or "no device measured"
        ax_tp.text(0.5, 0.5, f"training throughput {tp['status']}:\n{reason[:90]}", ha="center", va="center", wrap=True)
        ax_tp.set_xticks([])
        ax_tp.set_yticks([])
    ax_tp.set_title("Training throughput (MNIST CNN)")
    fig.tight_layout()
    with _atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
