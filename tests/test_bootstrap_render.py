"""Policies for the rendered user_data: valid cloud-config, clean shell, small, no secrets, no injection."""

import gzip
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml
from bootstrap_support import PARAMS, ROOT, TOKEN, params, payload_files

from infra.bootstrap import (
    FILES,
    USER_DATA_BUDGET,
    BootstrapError,
    decode_user_data,
    render_parts,
    render_user_data,
)
from infra.code_archive import build_code_archive


class Extra:
    """A pre-rendered file, as the guardrails' renderer hands them over."""

    def __init__(self, path: str, mode: str, text: str):
        self.path, self.mode, self.text = path, mode, text


def _schema_check(text: str, tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "Valid cloud-config" in output, f"cloud-init rejects {name}:\n{output}"


def test_every_cloud_config_part_passes_cloud_inits_schema(tmp_path):
    for name, text in render_parts(PARAMS).items():
        assert text.startswith("#cloud-config\n"), f"part {name} does not start with #cloud-config"
        _schema_check(text, tmp_path, name)
    # What EC2 really gets, unpacked as cloud-init unpacks it.
    _schema_check(decode_user_data(render_user_data(PARAMS).base64), tmp_path, "payload")


def test_cloud_inits_schema_check_catches_a_broken_part(tmp_path):
    # The validator must be able to fail, or the test above proves nothing.
    broken = render_parts(PARAMS)["cloud-config"].replace("runcmd:", "runcmd: 5\nbogus:", 1)
    path = tmp_path / "broken.yaml"
    path.write_text(broken)
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True)
    assert result.returncode != 0, "cloud-init schema accepted runcmd: 5"


def test_every_shipped_shell_script_passes_shellcheck(tmp_path):
    scripts = {
        p: t for p, (_, t) in payload_files().items() if t.startswith("#!/usr/bin/env bash") or p.endswith(".sh")
    }
    assert {"/opt/gpulab/bin/boot", "/opt/gpulab/bin/refresh", "/opt/gpulab/lib/common.sh"} <= set(scripts)
    paths = []
    for path, text in scripts.items():
        local = tmp_path / path.lstrip("/").replace("/", "_")
        local.write_text(text)
        paths.append(str(local))
    result = subprocess.run(["shellcheck", "--shell=bash", *paths], capture_output=True, text=True)
    assert result.returncode == 0, f"shellcheck found problems in the shipped scripts:\n{result.stdout}"


def test_user_data_with_the_guardrails_stays_under_half_of_ec2s_limit():
    files = payload_files()
    assert "/usr/local/lib/gpulab/idle_watch.py" in files and "/etc/systemd/system/gpulab-lifetime.timer" in files, (
        "the guardrails (idle watcher, lifetime timer) must ride in user_data"
    )
    size = render_user_data(PARAMS).size
    assert size < USER_DATA_BUDGET, f"user_data is {size} B gzipped, over the {USER_DATA_BUDGET} B budget"


def test_the_run_script_travels_in_the_code_archive_and_passes_shellcheck(tmp_path):
    archive = build_code_archive(tmp_path / "build")
    with tarfile.open(archive.path) as tar:
        member = tar.getmember("gpulab/bin/run-experiment")
        assert member.mode & 0o111, "bin/run-experiment must be executable in the archive"
        script = tmp_path / "run-experiment"
        script.write_bytes(tar.extractfile(member).read())
    result = subprocess.run(["shellcheck", "--shell=bash", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, f"shellcheck found problems in run-experiment:\n{result.stdout}"


def test_payload_is_gzip_of_the_readable_part_and_deterministic():
    first, second = render_user_data(PARAMS), render_user_data(PARAMS)
    assert first.payload == second.payload, "same params gave different bytes: user_data would churn the instance"
    assert gzip.decompress(first.payload).decode() == render_parts(PARAMS)["cloud-config"] == first.text


def test_user_data_carries_no_token_and_no_code_key(tmp_path):
    text = render_parts(PARAMS)["cloud-config"]
    assert TOKEN not in text and "jupyterToken" not in text
    key = build_code_archive(tmp_path).key
    assert key not in text and not re.search(r"code/gpulab-[0-9a-f]{16}", text), "user_data names an archive key"
    assert PARAMS.token_parameter in text and PARAMS.code_parameter in text


def test_settings_file_holds_the_stack_values():
    env = payload_files()["/etc/gpulab/gpulab.env"][1]
    for line in (
        "GPULAB_REGION=ap-northeast-1",
        "GPULAB_BUCKET=gpulab-artifacts-0a1b2c3",
        "GPULAB_CODE_PARAMETER=/gpulab/dev/code-key",
        "GPULAB_TOKEN_PARAMETER=/gpulab/dev/jupyter-token",
        "GPULAB_RUN_ON_BOOT=true",
        "GPULAB_IDLE_STOP_MINUTES=30",
        "GPULAB_MAX_LIFETIME_HOURS=12",
        "GPULAB_SPOT=false",
    ):
        assert line in env.splitlines(), f"gpulab.env lacks {line!r}:\n{env}"


def test_experiment_config_is_shipped_as_json_the_cli_can_read():
    from config.experiment import ExperimentConfig

    shipped = payload_files(params(experiment=ExperimentConfig(epochs=2, lr=0.05)))["/etc/gpulab/experiment.json"][1]
    assert ExperimentConfig.model_validate_json(shipped) == ExperimentConfig(epochs=2, lr=0.05)


def test_layout_others_rely_on_is_present():
    files = payload_files()
    for path in (
        "/opt/gpulab/bin/refresh",
        "/opt/gpulab/bin/boot",
        "/etc/gpulab/gpulab.env",
        "/etc/gpulab/jupyter_server_config.py",
        "/etc/systemd/system/gpulab-jupyter.service",
        "/etc/systemd/system/gpulab-boot.service",
    ):
        assert path in files, f"{path} is not in user_data"
    assert files["/opt/gpulab/bin/refresh"][0] == "0755"


def test_comments_stay_in_the_repo_but_not_in_the_payload():
    template = (ROOT / "infra/bootstrap/templates/refresh.sh").read_text()
    shipped = payload_files()["/opt/gpulab/bin/refresh"][1]
    assert "# gpulab refresh" in template and "# gpulab refresh" not in shipped
    assert shipped.startswith("#!/usr/bin/env bash\n")


def test_jupyter_unit_is_loopback_token_and_restarts_on_failure():
    files = payload_files()
    unit = files["/etc/systemd/system/gpulab-jupyter.service"][1]
    assert "Restart=on-failure" in unit and "LoadCredential=jupyter-token:/etc/gpulab/jupyter-token" in unit
    config = files["/etc/gpulab/jupyter_server_config.py"][1]
    assert 'c.ServerApp.ip = "127.0.0.1"' in config and "c.ServerApp.port = 8888" in config
    boot = files["/etc/systemd/system/gpulab-boot.service"][1]
    assert "Type=oneshot" in boot and "WantedBy=multi-user.target" in boot


def test_boot_runs_at_first_boot_and_is_enabled_for_every_later_boot():
    runcmd = yaml.safe_load(render_parts(PARAMS)["cloud-config"])["runcmd"]
    assert ["systemctl", "enable", "gpulab-boot.service"] in runcmd
    assert runcmd[-1] == ["systemctl", "start", "gpulab-boot.service"], "first boot must end by running gpulab-boot"


def test_extra_files_are_written_and_their_units_enabled():
    extra = [Extra("/etc/systemd/system/x-idle.timer", "0644", "[Timer]\nOnBootSec=1min\n")]
    document = yaml.safe_load(render_parts(PARAMS, extra=extra, enable=["x-idle.timer"])["cloud-config"])
    assert {"path": "/etc/systemd/system/x-idle.timer", "permissions": "0644", "content": extra[0].text} in document[
        "write_files"
    ]
    assert ["systemctl", "enable", "--now", "x-idle.timer"] in document["runcmd"]
    assert document["runcmd"][-1] == ["systemctl", "start", "gpulab-boot.service"]


def test_two_files_for_one_path_are_refused():
    with pytest.raises(BootstrapError, match="same instance path"):
        render_user_data(PARAMS, extra=[Extra(FILES[0].path, "0644", "x")])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bucket", "bucket; rm -rf /"),
        ("bucket", "Bucket_With_Caps"),
        ("stack", "dev\nruncmd: [reboot]"),
        ("region", "$(curl evil)"),
        ("code_parameter", "/gpulab/dev/code key"),
        ("token_parameter", "/x'y"),
        ("idle_stop_minutes", -1),
        ("spot", "yes"),
    ],
)
def test_unsafe_or_malformed_params_are_refused_naming_the_field(field, value):
    with pytest.raises(BootstrapError, match=f"BootstrapParams.{field}"):
        render_user_data(params(**{field: value}))
