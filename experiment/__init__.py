"""gpulab's experiment: the hands-on tutorial's MNIST CNN as a package with a CLI (`python -m experiment`).

train.py holds the model and the training step, data.py the two input pipelines, runner.py a whole run
(device, DDP, checkpoints, outputs), report.py the figures and the report, cli.py the commands.
Never imports pulumi: this side runs on the GPU box and on a laptop.
"""

__version__ = "0.1.0"
