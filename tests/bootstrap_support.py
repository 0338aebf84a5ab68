"""Shared by the bootstrap tests: stack params, the files inside the final user_data, and a temp
"instance" where those files are written under a root folder and run with GPULAB_* path overrides."""

import dataclasses
import json
import os
import shutil
from pathlib import Path

import yaml

from config.experiment import ExperimentConfig
from infra.bootstrap import BootstrapParams, decode_user_data, render_user_data
from infra.code_archive import SCRIPTS

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
NOTEBOOKS = ("getting_started.ipynb", "mnist.ipynb")  # what experiment/notebooks ships
TOKEN = "tok-" + "x" * 44  # stands in for the SSM SecureString

PARAMS = BootstrapParams(
    region="ap-northeast-1",
    stack="dev",
    bucket="gpulab-artifacts-0a1b2c3",
    code_parameter="/gpulab/dev/code-key",
    token_parameter="/gpulab/dev/jupyter-token",
    experiment=ExperimentConfig(run_on_boot=True),
    idle_stop_minutes=30,
    max_lifetime_hours=12,
    spot=False,
)


def params(**changes) -> BootstrapParams:
    return dataclasses.replace(PARAMS, **changes)


def payload_files(p: BootstrapParams = PARAMS) -> dict[str, tuple[str, str]]:
    """instance path -> (permissions, text), decoded from the base64 user_data EC2 would get."""
    document = yaml.safe_load(decode_user_data(render_user_data(p).base64))
    return {entry["path"]: (entry["permissions"], entry["content"]) for entry in document["write_files"]}


def install_instance(root: Path, p: BootstrapParams = PARAMS) -> dict[str, str]:
    """Write every user_data file under root (as cloud-init would under /); return the env for its scripts."""
    for path, (mode, text) in payload_files(p).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(int(mode, 8))
    return {
        "GPULAB_ETC": str(root / "etc/gpulab"),
        "GPULAB_OPT": str(root / "opt/gpulab"),
        "GPULAB_STATE": str(root / "var/lib/gpulab"),
        "GPULAB_LIB": str(root / "opt/gpulab/lib/common.sh"),
        "GPULAB_SYSTEMD": str(root / "etc/systemd/system"),
    }


def source_tree(dest: Path) -> Path:
    """A copy of what build_code_archive packs (pyproject, config/, experiment/, the run script), to modify freely."""
    dest.mkdir(parents=True)
    shutil.copy(ROOT / "pyproject.toml", dest)
    shutil.copytree(ROOT / "config", dest / "config", ignore=shutil.ignore_patterns("__pycache__"))
    for source in SCRIPTS:
        (dest / source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / source, dest / source)
    shutil.copytree(ROOT / "experiment", dest / "experiment", ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def fake_aws_env(state: Path) -> dict[str, str]:
    """PATH and FAKE_AWS for tests/fixtures/fake-aws, the AWS CLI stand-in."""
    bin_dir = state / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "fake-aws", bin_dir / "aws")
    (state / "ssm").mkdir(exist_ok=True)
    (state / "s3").mkdir(exist_ok=True)
    return {"FAKE_AWS": str(state), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def set_parameter(state: Path, name: str, value: str) -> None:
    path = state / "ssm" / name.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value)


def experiment_json(p: BootstrapParams = PARAMS) -> dict:
    return json.loads(payload_files(p)["/etc/gpulab/experiment.json"][1])
