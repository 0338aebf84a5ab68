"""gpulab configuration: the one place that defines and validates settings.

Depends on pydantic and pyyaml only, so both the deploy side (Pulumi) and the
experiment side (PyTorch) can import it without pulling in the other.
"""

from config.experiment import ExperimentConfig

__all__ = ["ExperimentConfig"]
