"""Policies on the two sides: deploying never needs torch, the experiment never needs Pulumi."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Makes any import of the named top-level packages fail, as if they were not installed.
BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} must not be imported on this side")
sys.meta_path.insert(0, Block())
"""


def run_without(blocked: set[str], code: str) -> subprocess.CompletedProcess:
    script = BLOCK.format(blocked=blocked) + code
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=180, env={"PATH": "/usr/bin"}
    )


def test_the_pulumi_program_runs_without_torch():
    code = (
        "sys.path.insert(0, 'tests')\n"
        "from pulumi_harness import run_program\n"
        "run = run_program()\n"
        "assert run.error is None, run.error\n"
        "assert run.of_type('aws:ec2/instance:Instance'), 'no instance'\n"
    )
    result = run_without({"torch", "torchvision", "matplotlib", "experiment"}, code)
    assert result.returncode == 0, f"the deploy side needed the experiment side:\n{result.stderr[-3000:]}"


def test_the_config_validator_runs_without_torch_or_pulumi():
    code = "from config.__main__ import main\nassert main(['validate', 'Pulumi.dev.yaml']) == 0\n"
    result = run_without({"torch", "torchvision", "pulumi", "pulumi_aws"}, code)
    assert result.returncode == 0, f"python -m config needed torch or pulumi:\n{result.stderr[-3000:]}"


def test_the_experiment_runs_without_pulumi(tmp_path):
    code = (
        "sys.path.insert(0, 'tests')\n"
        "from mnist_idx import write_mnist\n"
        "from experiment.cli import main\n"
        f"data = write_mnist(__import__('pathlib').Path({str(tmp_path)!r}), n_train=128, n_test=64)\n"
        f"assert main(['train', '--quick', '--no-progress', '--device', 'cpu', '--data-dir', str(data),"
        f" '--output-dir', {str(tmp_path / 'run')!r}]) == 0\n"
    )
    result = run_without({"pulumi", "pulumi_aws", "infra"}, code)
    assert result.returncode == 0, f"the experiment needed the deploy side:\n{result.stderr[-3000:]}"
