"""Renders a benchmark result: the terminal table, benchmark.json and the bar chart, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
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
        f"torch uses {m.get('torch_threads')}), load avg {m.get('load_average_1m')} at start, {m.get('load_average_1m_end')} at end",
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


def _scale(ax, values: list[float], what: str) -> None:
    """Log scale when the bars span more than a factor of 10 (CPU vs GPU), else linear from 0 (honest heights)."""
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 10:
        ax.set_yscale("log")
        ax.set_ylim(min(positive) / 3, max(positive) * 4)  # every bar visible; room for labels and legend
        ax.set_ylabel(f"{what} (log scale)")
    else:
        ax.set_ylim(top=max(positive, default=1) * 1.3)
        ax.set_ylabel(what)


def _tutorial_gflops() -> list[tuple[str, float]]:
    n = TUTORIAL["n"]
    return [
        ("tutorial g4dn CPU (1 run)", 2 * n**3 / TUTORIAL["cpu_s"] / 1e9),
        ("tutorial T4 (1 run)", 2 * n**3 / TUTORIAL["gpu_s"] / 1e9),
    ]


def write_chart(result: dict, path: Path) -> Path:
    """Bar chart: matmul GFLOP/s per size and (device, dtype), the tutorial's 10000 figures beside ours;
    training images/s per device and pipeline. Log scale where the bars span more than 10×."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [c for c in result["matmul"]["cases"] if c["status"] == "ok"]
    series = sorted({(c["device"], c["dtype"]) for c in ok})
    sizes = sorted({c["n"] for c in ok})
    fig, (ax_mm, ax_tp) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [3, 2]})

    plotted: list[float] = []
    width = 0.8 / max(1, len(series))
    for i, (device, dtype) in enumerate(series):
        values = {c["n"]: c["gflops_median"] for c in ok if (c["device"], c["dtype"]) == (device, dtype)}
        xs = [j + i * width for j, n in enumerate(sizes) if n in values]
        heights = [values[n] for n in sizes if n in values]
        bars = ax_mm.bar(xs, heights, width, label=f"{device} {dtype} (this machine)")
        ax_mm.bar_label(bars, fmt="%.0f", fontsize=7)
        plotted += heights
    ticks = [j + width * (len(series) - 1) / 2 for j in range(len(sizes))]
    labels = [str(n) for n in sizes]
    if TUTORIAL["n"] in sizes or not sizes:
        # The tutorial's one-shot figures, as their own group so they are never mistaken for ours.
        x0 = len(sizes)
        for k, (label, gflops) in enumerate(_tutorial_gflops()):
            bar = ax_mm.bar([x0 + (k - 0.5) * 0.4], [gflops], 0.4, color=("lightgrey", "darkgrey")[k],
                            hatch=("//", "xx")[k], edgecolor="dimgrey", label=label)  # fmt: skip
            ax_mm.bar_label(bar, fmt="%.0f", fontsize=7)
            plotted.append(gflops)
        ticks.append(x0)
        labels.append(f"{TUTORIAL['n']}\n(tutorial, g4dn)")
    ax_mm.set_xticks(ticks, labels)
    xlabel = "matrix size n (n×n @ n×n)"
    if result["matmul"]["gpu"]["status"] == "skipped":
        xlabel += "\n" + textwrap.fill("GPU skipped: " + result["matmul"]["gpu"]["reason"], 100)
    ax_mm.set_xlabel(xlabel)
    _scale(ax_mm, plotted, "GFLOP/s, median run")
    ax_mm.set_title("Matmul throughput")
    ax_mm.legend(fontsize=8, loc="upper left")

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
        _scale(ax_tp, train + evals, "images/s, median round")
        ax_tp.legend(fontsize=8)
    else:
        reason = textwrap.fill(tp.get("reason") or "no device measured", 45)
        ax_tp.text(0.5, 0.5, f"training throughput {tp['status']}:\n{reason}", ha="center", va="center", fontsize=9)
        ax_tp.set_xticks([])
        ax_tp.set_yticks([])
    ax_tp.set_title("Training throughput (MNIST CNN)")
    fig.tight_layout()
    with _atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
