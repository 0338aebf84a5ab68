"""The tutorial's three figures (training loss, ground truth, predictions) and a short markdown report."""

from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.figure import Figure  # no pyplot: no global backend, works headless and inline in notebooks

from experiment.data import MEAN, STD

FIGURES = {"loss_plot": "train_loss.png", "ground_truth_plot": "ground_truth.png", "prediction_plot": "predictions.png"}


def first_test_images(dataset, n: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n test images, normalised like the training input, and their labels."""
    images = dataset.data[:n].unsqueeze(1).float().div(255).sub(MEAN).div(STD)
    return images.contiguous(memory_format=torch.channels_last), dataset.targets[:n].clone()


def _save(fig: Figure, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    tmp.replace(path)


def digit_grid_figure(images: torch.Tensor, titles: list[str], colors: list[str] | None = None) -> Figure:
    """2 x 5 grid like the tutorial's (grey images, no ticks, a title per image)."""
    fig = Figure(figsize=(10, 4))
    for i in range(min(10, len(images))):
        ax = fig.add_subplot(2, 5, i + 1)
        ax.imshow(images[i][0].float().cpu().numpy(), cmap="gray", interpolation="none")
        ax.set_title(titles[i], color=(colors[i] if colors else "black"))
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def digit_grid(path: Path, images: torch.Tensor, titles: list[str], colors: list[str] | None = None) -> None:
    _save(digit_grid_figure(images, titles, colors), path)


def loss_figure(losses: list[float]) -> Figure:
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    ax.plot(losses)
    ax.set_xlabel("Iterations")
    ax.set_ylabel("Train loss")
    return fig


def loss_curve(path: Path, losses: list[float]) -> None:
    _save(loss_figure(losses), path)


def draw_figures(out_dir: Path, losses: list[float], images, labels, predicted) -> dict[str, str]:
    out_dir = Path(out_dir)
    loss_curve(out_dir / FIGURES["loss_plot"], losses)
    digit_grid(out_dir / FIGURES["ground_truth_plot"], images, [f"Ground Truth: {int(t)}" for t in labels])
    digit_grid(
        out_dir / FIGURES["prediction_plot"],
        images,
        [f"Prediction: {int(p)}" for p in predicted],
        ["black" if int(p) == int(t) else "red" for p, t in zip(predicted, labels, strict=True)],
    )
    return dict(FIGURES)


def write_report(path: Path, metrics: dict, figures: dict[str, str]) -> None:
    cfg = metrics["config"]
    rows = "\n".join(
        f"| {r['epoch']} | {r['train_loss']:.4f} | {r['test_loss']:.4f} | {r['test_accuracy']:.2f} | "
        f"{r['train_images_per_s']:.0f} |"
        for r in metrics["per_epoch"]
    )
    text = f"""# MNIST CNN run

Test accuracy **{metrics["test_accuracy"]:.2f}%** after {metrics["epochs"]} epoch(s) on {metrics["device"]}
(x{metrics["world_size"]} process(es)), loader `{cfg["loader"]}`, batch {cfg["batchSize"]}, SGD lr {cfg["lr"]}
momentum {cfg["momentum"]}, seed {cfg["seed"]}, amp {cfg["amp"]}{" (quick smoke run)" if metrics["quick"] else ""}.
Training ran at {metrics["train_images_per_s"]:.0f} images/s, evaluation at {metrics["eval_images_per_s"]:.0f} images/s;
the whole run took {metrics["seconds"]:.1f} s with torch {metrics["torch_version"]}.

| epoch | train loss | test loss | test accuracy (%) | train images/s |
|---:|---:|---:|---:|---:|
{rows}

## Training loss
![training loss]({figures["loss_plot"]})

## Test images and their labels
![ground truth]({figures["ground_truth_plot"]})

## The model's predictions (red: wrong)
![predictions]({figures["prediction_plot"]})

Files: `mnist_cnn.pt` (state_dict: `model.load_state_dict(torch.load("mnist_cnn.pt"))`), `checkpoint.pt`
(for `--resume`), `metrics.json` (all numbers and the resolved config).
"""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
