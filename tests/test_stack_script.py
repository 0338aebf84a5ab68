"""Policies for `make up/preview/destroy` (scripts/stack.sh), run against a stand-in `pulumi` CLI.

The stand-in records its arguments and stdin, so these tests see exactly what the real CLI would get.
"""

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PULUMI = r"""#!/usr/bin/env bash
# Stand-in Pulumi CLI: logs each call; `config get` fails unless a token was set; `whoami` fails (not logged in).
log="$FAKE_LOG"
if [[ $1 == config && $2 == set ]]; then
  value=$(cat)
  echo "config set ${*:3} stdin=${#value}chars passphrase_file=${PULUMI_CONFIG_PASSPHRASE_FILE:-} backend=${PULUMI_BACKEND_URL:-}" >>"$log"
  printf '%s' "$value" >"$FAKE_LOG.token"
  exit 0
fi
echo "$* | passphrase_file=${PULUMI_CONFIG_PASSPHRASE_FILE:-} backend=${PULUMI_BACKEND_URL:-}" >>"$log"
case $1 in
  whoami) exit 1 ;;
  config) [[ -f $FAKE_LOG.token ]] && exit 0 || exit 1 ;;
esac
exit 0
"""


@pytest.fixture()
def project(tmp_path):
    """A copy of the project files the script needs, with a deploy venv stand-in and a fake pulumi."""
    work = tmp_path / "project"
    work.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "requirements.txt"):
        shutil.copy(ROOT / name, work / name)
    shutil.copytree(ROOT / "config", work / "config", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "scripts", work / "scripts")
    venv_bin = work / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(Path(os.sys.executable))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "pulumi"
    fake.write_text(FAKE_PULUMI)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "pulumi.log"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "FAKE_LOG": str(log),
    }
    return work, env, log


def run(project, action, extra_env=None):
    work, env, log = project
    result = subprocess.run(
        ["bash", "scripts/stack.sh", action],
        cwd=work,
        env={**env, **(extra_env or {})},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    return result, log.read_text() if log.exists() else ""


def test_up_generates_a_token_through_stdin_never_argv(project):
    result, calls = run(project, "up")
    assert result.returncode == 0, result.stderr
    set_calls = [c for c in calls.splitlines() if c.startswith("config set")]
    assert len(set_calls) == 1, f"expected one `config set`, got:\n{calls}"
    assert "--secret gpulab:jupyterToken stdin=" in set_calls[0]
    token = (Path(project[2]).parent / "pulumi.log.token").read_text().strip()
    assert len(token) >= 32, "the generated token must be at least 32 characters"
    assert token not in calls + result.stdout + result.stderr, "the token must never reach argv or the logs"
    assert "up --stack dev" in calls


def test_up_does_not_replace_an_existing_token(project):
    run(project, "up")
    _, calls = run(project, "up")
    assert sum(c.startswith("config set") for c in calls.splitlines()) == 1


def test_local_state_and_passphrase_file_when_not_logged_in(project):
    work = project[0]
    result, calls = run(project, "preview")
    assert result.returncode == 0, result.stderr
    assert f"backend=file://{work}/.pulumi-state" in calls
    passfile = work / ".gpulab" / "passphrase"
    assert passfile.is_file() and passfile.stat().st_mode & 0o077 == 0, "the passphrase file must be private (600)"
    assert f"passphrase_file={passfile}" in calls
    assert str(passfile) in result.stdout, "the user must be told where the passphrase lives"


def test_users_own_passphrase_is_respected(project):
    result, calls = run(project, "preview", {"PULUMI_CONFIG_PASSPHRASE": "mine"})
    assert result.returncode == 0, result.stderr
    assert not (project[0] / ".gpulab" / "passphrase").exists()
    assert "passphrase_file= " in calls


def test_bad_stack_stops_before_pulumi_runs(project):
    work = project[0]
    stack = work / "Pulumi.dev.yaml"
    stack.write_text(stack.read_text().replace("g4dn.xlarge", "t3.micro"))
    result, calls = run(project, "up")
    assert result.returncode != 0
    assert "gpulab:instanceType" in result.stderr
    assert "up --stack" not in calls and "config set" not in calls, "nothing may reach Pulumi after a bad config"


def test_missing_pulumi_cli_is_a_clear_error(project):
    work, env, _ = project
    (Path(env["PATH"].split(":")[0]) / "pulumi").unlink()
    result = subprocess.run(
        ["bash", "scripts/stack.sh", "up"], cwd=work, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0 and "Pulumi CLI is not installed" in result.stderr


def test_scripts_pass_shellcheck():
    scripts = [*sorted((ROOT / "scripts").glob("*.sh")), ROOT / ".ci" / "run"]
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
