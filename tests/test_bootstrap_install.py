"""Policies for the on-instance scripts, run for real in a temp "instance": the install step into an
env that already has the AMI's torch (a fake torch 2.0.0+ami wheel), S3 and SSM served by the
AWS CLI stand-in tests/fixtures/fake-aws, systemctl and curl by recording stand-ins."""

import hashlib
import os
import shutil
import site
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from bootstrap_support import (
    NOTEBOOKS,
    PARAMS,
    TOKEN,
    fake_aws_env,
    install_instance,
    set_parameter,
    source_tree,
)

from infra.code_archive import build_code_archive

AMI_TORCH = "2.0.0+ami"


def _fake_torch_wheel(folder: Path) -> Path:
    """A minimal wheel named torch, standing in for the AMI's CUDA build."""
    wheel = folder / f"torch-{AMI_TORCH}-py3-none-any.whl"
    dist = f"torch-{AMI_TORCH}.dist-info"
    files = {
        "torch/__init__.py": f'__version__ = "{AMI_TORCH}"\nAMI_BUILD = True\n',
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: torch\nVersion: {AMI_TORCH}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: gpulab-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
        zf.writestr(f"{dist}/RECORD", "".join(f"{name},,\n" for name in files) + f"{dist}/RECORD,,\n")
    return wheel


def _stand_in(path: Path, body: str) -> None:
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _publish(tree: Path, state: Path) -> str:
    """Build the code archive as the program does, 'upload' it, and point the code parameter at it."""
    archive = build_code_archive(state / "build", root=tree)
    target = state / "s3" / PARAMS.bucket / archive.key
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(archive.path, target)
    set_parameter(state, PARAMS.code_parameter, archive.key)
    return archive.key


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    base = tmp_path_factory.mktemp("box")
    # The "AMI env": a fresh venv holding the fake torch; the rest of an AMI env (pip, pydantic,
    # matplotlib, jupyterlab...) comes from the dev venv through a .pth line, appended after the
    # venv's own site-packages, so the fake torch is the torch this env imports and pip sees.
    ami = base / "ami-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(ami)], check=True)
    ami_python = ami / "bin" / "python"
    purelib = subprocess.run(
        [str(ami_python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "dev-venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [str(ami_python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(_fake_torch_wheel(base))],
        check=True,
    )
    torch_init = Path(purelib, "torch", "__init__.py")

    state = base / "aws"
    env = os.environ | fake_aws_env(state) | install_instance(base / "root")
    stubs = base / "stubs"
    stubs.mkdir()
    _stand_in(stubs / "systemctl", f'echo "systemctl $*" >>{state}/systemctl.log')
    _stand_in(stubs / "curl", "exit 0  # Jupyter answers (its real behaviour is tested in test_bootstrap_jupyter)")
    env |= {
        "GPULAB_SYSTEMCTL": str(stubs / "systemctl"),
        "GPULAB_CURL": str(stubs / "curl"),
        "GPULAB_PYTHON": str(ami_python),
        "GPULAB_USER": subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip(),
        "GPULAB_NOTEBOOK_DIR": str(base / "notebooks"),
        "GPULAB_RUNS": str(base / "runs"),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    tree = source_tree(base / "src")
    key = _publish(tree, state)
    set_parameter(state, PARAMS.token_parameter, TOKEN)
    return {
        "base": base,
        "env": env,
        "state": state,
        "tree": tree,
        "key": key,
        "python": ami_python,
        "torch_init": torch_init,
        "torch_sha": hashlib.sha256(torch_init.read_bytes()).hexdigest(),
        "root": base / "root",
        "gpulab_state": Path(env["GPULAB_STATE"]),
    }


def _run(box, script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(box["root"] / "opt/gpulab/bin" / script), *args], env=box["env"], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def first_boot(box):
    result = _run(box, "boot")
    assert result.returncode == 0, f"first boot failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_first_boot_installs_the_archive_and_the_package_imports(box, first_boot):
    check = subprocess.run(
        [
            str(box["python"]),
            "-c",
            "import importlib.metadata as m, importlib.util as u, config.experiment as c; "
            "print(m.version('gpulab-experiment')); print(u.find_spec('experiment').origin); print(c.__file__)",
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd=box["base"],
    )
    assert check.returncode == 0, check.stderr
    version, experiment_origin, config_file = check.stdout.split()
    assert version == "0.1.0"
    for path in (experiment_origin, config_file):
        assert str(box["base"] / "ami-env") in path, f"{path} is not installed in the AMI env"
    assert (box["gpulab_state"] / "installed-code-key").read_text().strip() == box["key"]


def test_install_keeps_the_amis_torch(box, first_boot):
    version = subprocess.run(
        [str(box["python"]), "-c", "import torch; print(torch.__version__, torch.AMI_BUILD)"],
        capture_output=True,
        text=True,
    ).stdout.split()
    assert version == [AMI_TORCH, "True"], f"torch is now {version}, not the AMI's {AMI_TORCH}"
    assert hashlib.sha256(box["torch_init"].read_bytes()).hexdigest() == box["torch_sha"], "torch was reinstalled"
    constraints = (box["gpulab_state"] / "constraints.txt").read_text()
    assert f"torch=={AMI_TORCH}" in constraints.splitlines()


def test_first_boot_writes_token_root_only_and_never_logs_it(box, first_boot):
    token_file = box["root"] / "etc/gpulab/jupyter-token"
    assert token_file.read_text() == TOKEN
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert TOKEN not in first_boot.stdout + first_boot.stderr


def test_first_boot_copies_the_notebooks_and_starts_jupyter_and_the_run(box, first_boot):
    for name in NOTEBOOKS:
        assert (box["base"] / "notebooks" / name).is_file(), f"{name} not in the notebook dir"
    calls = (box["state"] / "systemctl.log").read_text()
    assert "systemctl restart --no-block gpulab-jupyter.service" in calls
    assert "systemctl start --no-block gpulab-run@boot-" in calls, "experiment.runOnBoot did not start a run"
    dropin = (box["root"] / "etc/systemd/system/gpulab-jupyter.service.d/10-gpulab-user.conf").read_text()
    assert f"User={box['env']['GPULAB_USER']}" in dropin
    ready = (box["gpulab_state"] / "ready").read_text()
    assert box["key"] in ready and "READY" in first_boot.stdout


def test_a_later_boot_keeps_the_code_and_resumes_only_unfinished_runs(box, first_boot):
    runs = box["base"] / "runs"
    for run_id, last_file in (("spot-cut", "checkpoint.pt"), ("done", "metrics.json"), ("broken", "FAILED")):
        (runs / run_id).mkdir(parents=True)
        (runs / run_id / ".gpulab-run").write_text("started\n")
        (runs / run_id / last_file).write_text("x")
    result = _run(box, "boot")
    assert result.returncode == 0, result.stderr
    assert "code is up to date" in result.stdout and "pip install" not in result.stdout
    calls = (box["state"] / "systemctl.log").read_text()
    assert calls.count("gpulab-run@boot-") == 1, "runOnBoot started a second run on a later boot"
    assert "start --no-block gpulab-run@spot-cut.service" in calls, "the unfinished run was not resumed"
    assert "gpulab-run@done" not in calls and "gpulab-run@broken" not in calls
    for run_id in ("spot-cut", "done", "broken"):
        shutil.rmtree(runs / run_id)


def test_refresh_installs_new_code_and_keeps_an_edited_notebook(box, first_boot):
    edited = box["base"] / "notebooks" / NOTEBOOKS[0]
    edited.write_text(edited.read_text().replace("{", "{\n", 1))  # the user changed it
    mine = edited.read_text()
    shipped = box["tree"] / "experiment" / "notebooks" / NOTEBOOKS[0]
    shipped.write_text(shipped.read_text().replace("{", '{"metadata_note": "v2",', 1))
    (box["tree"] / "config" / "gpulab_refresh_marker.py").write_text("MARK = 2\n")
    key = _publish(box["tree"], box["state"])
    assert key != box["key"]
    result = _run(box, "refresh")
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert (box["gpulab_state"] / "installed-code-key").read_text().strip() == key
    marker = subprocess.run(
        [str(box["python"]), "-c", "import config.gpulab_refresh_marker as m; print(m.MARK)"],
        capture_output=True,
        text=True,
        cwd=box["base"],
    )
    assert marker.stdout.strip() == "2", f"the new code is not what the env imports: {marker.stderr}"
    assert edited.read_text() == mine, "refresh overwrote a notebook the user edited"
    assert (edited.parent / (edited.stem + ".new.ipynb")).read_text() == shipped.read_text()
    assert "systemctl try-restart gpulab-jupyter.service" in (box["state"] / "systemctl.log").read_text()
    assert hashlib.sha256(box["torch_init"].read_bytes()).hexdigest() == box["torch_sha"]


def test_a_corrupt_archive_is_refused_and_the_old_code_stays(box, first_boot):
    installed = (box["gpulab_state"] / "installed-code-key").read_text()
    bad_key = "code/gpulab-0123456789abcdef.tar.gz"
    target = box["state"] / "s3" / PARAMS.bucket / bad_key
    target.write_bytes(b"not the archive the key names")
    set_parameter(box["state"], PARAMS.code_parameter, bad_key)
    try:
        result = _run(box, "refresh")
        assert result.returncode != 0 and "corrupt or replaced" in result.stderr, result.stderr
        assert (box["gpulab_state"] / "installed-code-key").read_text() == installed
    finally:
        set_parameter(box["state"], PARAMS.code_parameter, installed.strip())


def test_boot_without_a_token_fails_visibly_and_is_not_ready(box, first_boot):
    token_file = box["root"] / "etc/gpulab/jupyter-token"
    saved = token_file.read_text()
    token_file.unlink()
    (box["state"] / "ssm" / PARAMS.token_parameter.lstrip("/")).unlink()
    env = box["env"] | {"GPULAB_RETRIES": "1"}
    try:
        result = subprocess.run(
            [str(box["root"] / "opt/gpulab/bin/boot")], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode != 0
        assert "cannot read the Jupyter token" in result.stderr and "not ready" in result.stderr
        assert not (box["gpulab_state"] / "ready").exists(), "a failed boot left the readiness marker"
    finally:
        set_parameter(box["state"], PARAMS.token_parameter, TOKEN)
        token_file.write_text(saved)


def _fake_experiment(box, body: str) -> dict[str, str]:
    """A python stand-in for the experiment CLI: records its argv, then runs body (bash)."""
    fake = box["base"] / "fake-python"
    _stand_in(fake, f'echo "$*" >>"{box["base"]}/experiment-args.log"\n{body}')
    return box["env"] | {"GPULAB_PYTHON": str(fake)}


def _run_experiment(box, env, run_id):
    return subprocess.run(
        [str(box["root"] / "opt/gpulab/bin/run-experiment"), run_id], env=env, capture_output=True, text=True
    )


def test_an_unfinished_run_resumes_from_its_checkpoint_and_syncs(box, first_boot):
    run = box["base"] / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "checkpoint.pt").write_bytes(b"ckpt")
    env = _fake_experiment(box, 'all="$*"; out=${all##*--output-dir }; out=${out%% *}; echo "{}" >"$out/metrics.json"')
    result = _run_experiment(box, env, "r1")
    assert result.returncode == 0, result.stderr
    args = (box["base"] / "experiment-args.log").read_text().splitlines()[-1]
    assert args.startswith("-m experiment all --config ") and args.endswith(f"--output-dir {run} --resume")
    synced = box["state"] / "s3" / PARAMS.bucket / "runs" / "r1"
    assert (synced / "metrics.json").is_file(), "the finished run was not synced to s3://<bucket>/runs/r1/"


def test_a_failed_run_is_marked_synced_and_not_resumed(box, first_boot):
    env = _fake_experiment(box, 'echo "boom" >&2; exit 3')
    result = _run_experiment(box, env, "r2")
    assert result.returncode != 0 and "failed (exit 3)" in result.stderr
    run = box["base"] / "runs" / "r2"
    assert "exit status 3" in (run / "FAILED").read_text()
    assert "boom" in (run / "experiment.log").read_text()
    assert (box["state"] / "s3" / PARAMS.bucket / "runs" / "r2" / "FAILED").is_file()


def test_a_bad_run_id_is_refused(box, first_boot):
    result = _run_experiment(box, box["env"], "../etc")
    assert result.returncode != 0 and "run id" in result.stderr
