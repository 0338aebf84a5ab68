"""Use a saved model: evaluate it on the test set, or predict digits from PNG files or test images."""

from __future__ import annotations

from pathlib import Path

import torch

from experiment import data as mnist
from experiment.train import Net, evaluate


class ModelFileError(Exception):
    """The model file is missing or not a state_dict of this CNN; the message names the file and the fix."""


def load_model(path: Path, device: torch.device) -> Net:
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"no model at {path}; train one first (`python -m experiment train`) or pass --model.")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        model = Net()
        model.load_state_dict(state)
    except Exception as err:
        raise ModelFileError(f"{path} is not a saved state_dict of this CNN ({type(err).__name__}: {err}).") from err
    return model.to(device, memory_format=torch.channels_last).eval()


def evaluate_saved(
    model_path: Path,
    data_dir: Path,
    device: torch.device,
    *,
    batch_size: int = 1000,
    download: bool = True,
    limit: int | None = None,
) -> dict:
    """Test loss and accuracy (%) of a saved model on the MNIST test split."""
    model = load_model(model_path, device)
    test = mnist.load_mnist(data_dir, False, download=download)
    x, y = mnist.normalized_tensor(test, device, limit)
    return evaluate(model, mnist.tensor_batches(x, y, batch_size), device)


def png_to_input(path: Path) -> torch.Tensor:
    """A digit image file -> 1 x 1 x 28 x 28 normalised input. Greyscale, resized to 28x28; a light background
    is inverted, because MNIST digits are white on black."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            grey = img.convert("L").resize((28, 28), Image.BILINEAR)
    except (OSError, UnidentifiedImageError) as err:
        raise ModelFileError(f"{path} is not a readable image ({err}); give PNG files of single digits.") from err
    x = torch.frombuffer(bytearray(grey.tobytes()), dtype=torch.uint8).view(1, 1, 28, 28).float().div(255)
    if x.mean() > 0.5:
        x = 1.0 - x
    return x.sub(mnist.MEAN).div(mnist.STD)


@torch.no_grad()
def predict(model: Net, inputs: torch.Tensor, device: torch.device) -> list[dict]:
    """Per input: the predicted digit and its probability."""
    probs = model(inputs.to(device).contiguous(memory_format=torch.channels_last)).exp().cpu()
    conf, digit = probs.max(dim=1)
    return [{"digit": int(d), "probability": float(p)} for d, p in zip(digit, conf, strict=True)]
