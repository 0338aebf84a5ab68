"""The experiment's settings, shared by `python -m experiment` and the stack's `gpulab:experiment` key.

Defaults are the hands-on tutorial's: SGD lr 0.01 momentum 0.5, batch 64, test batch 1000, 5 epochs.
Keys are camelCase as written in the stack YAML; Python code may use the snake_case names.
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel


class ExperimentConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)

    epochs: int = Field(5, ge=1, le=1000, description="Training epochs over the MNIST training set.")
    batch_size: int = Field(64, ge=1, le=65536, description="Training mini-batch size (per process under torchrun).")
    test_batch_size: int = Field(1000, ge=1, le=65536, description="Evaluation batch size.")
    lr: float = Field(0.01, gt=0, le=10, description="SGD learning rate.")
    momentum: float = Field(0.5, ge=0, lt=1, description="SGD momentum.")
    seed: int = Field(1, ge=0, le=2**32 - 1, description="Random seed for weights, shuffling and dropout.")
    loader: Literal["tensor", "torchvision"] = Field(
        "tensor",
        description="Input pipeline: 'tensor' keeps the whole split as one normalized tensor on the device; "
        "'torchvision' is the tutorial's DataLoader with per-sample transforms.",
    )
    device: Literal["auto", "cuda", "mps", "cpu"] = Field(
        "auto", description="Where to train: 'auto' picks cuda, then mps, then cpu."
    )
    amp: Literal["off", "fp16", "bf16"] = Field(
        "off", description="Mixed precision on GPU: fp16 (with a gradient scaler, e.g. T4) or bf16 (Ampere and newer)."
    )
    log_interval: int = Field(100, ge=1, description="Log a line every this many training batches.")
    run_on_boot: bool = Field(
        False, description="On the instance: run the full experiment at first boot and sync results to the bucket."
    )

    @model_validator(mode="after")
    def _amp_needs_gpu(self) -> "ExperimentConfig":
        if self.amp != "off" and self.device in ("cpu", "mps"):
            raise ValueError(
                f"amp={self.amp!r} needs a CUDA GPU but device={self.device!r}; "
                "set amp to 'off', or device to 'auto' or 'cuda'"
            )
        return self
