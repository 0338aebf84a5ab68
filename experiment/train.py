"""The tutorial's CNN, one training epoch and one evaluation pass. Each returns its metrics."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn


class Net(nn.Module):
    """Hands-on #2's model (PyTorch's MNIST example): 2 conv + 2 fully connected layers, log-softmax output."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """Mixed precision on CUDA when asked; a no-op context otherwise."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_one_epoch(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
    scaler=None,
    log_interval: int = 100,
    on_log: Callable[[int, float], None] | None = None,
) -> dict:
    """One pass over `batches`. Losses stay on the device and are read once at the end (and at each log
    interval), so a GPU is never stalled by a per-step .item()."""
    model.train()
    losses, images = [], 0
    _sync(device)
    start = time.perf_counter()
    for i, (data, target) in enumerate(batches):
        data, target = data.to(device, non_blocking=True), target.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp_dtype):
            loss = F.nll_loss(model(data), target)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        losses.append(loss.detach())
        images += len(target)
        if on_log is not None and i % log_interval == 0:
            on_log(i, loss.item())
    _sync(device)
    seconds = time.perf_counter() - start
    curve = torch.stack(losses).float().cpu().tolist() if losses else []
    return {
        "loss": sum(curve) / max(len(curve), 1),
        "losses": curve,
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds if seconds > 0 else 0.0,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    *,
    amp_dtype: torch.dtype | None = None,
) -> dict:
    """Summed NLL loss and correct predictions over `batches`; loss is per image, accuracy in percent."""
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    images = 0
    _sync(device)
    start = time.perf_counter()
    for data, target in batches:
        data, target = data.to(device, non_blocking=True), target.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            output = model(data)
        loss_sum += F.nll_loss(output.float(), target, reduction="sum")
        correct += (output.argmax(dim=1) == target).sum()
        images += len(target)
    _sync(device)
    seconds = time.perf_counter() - start
    return summarize_eval(loss_sum.item(), int(correct.item()), images, seconds)


def summarize_eval(loss_sum: float, correct: int, images: int, seconds: float) -> dict:
    return {
        "loss": loss_sum / max(images, 1),
        "accuracy": 100.0 * correct / max(images, 1),
        "loss_sum": loss_sum,
        "correct": correct,
        "images": images,
        "seconds": seconds,
        "images_per_s": images / seconds if seconds > 0 else 0.0,
    }
