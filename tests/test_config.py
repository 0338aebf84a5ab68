"""Policies for the stack config: a bad value is refused with its key, the value and the fix."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from config import ExperimentConfig
from config.loader import ConfigError, load_stack_file, parse_settings

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT / "Pulumi.dev.yaml"
TOKEN = "t" * 40
GOOD = {"aws:region": "ap-northeast-1", "gpulab:instanceType": "g4dn.xlarge"}

# (case id, settings to merge into GOOD, key that must be named, words of the fix that must appear)
BAD = [
    ("non-gpu-type", {"gpulab:instanceType": "t3.micro"}, "gpulab:instanceType", "GPU family"),
    ("not-a-type", {"gpulab:instanceType": "bigbox"}, "gpulab:instanceType", "family.size"),
    ("amd-gpu-family", {"gpulab:instanceType": "g4ad.xlarge"}, "gpulab:instanceType", "g4dn.xlarge"),
    ("type-wrong-type", {"gpulab:instanceType": 5}, "gpulab:instanceType", "Fix: write it as text"),
    ("misspelt-key", {"gpulab:instanceTyp": "g5.xlarge"}, "gpulab:instanceTyp", "did you mean gpulab:instanceType?"),
    ("misspelt-case", {"gpulab:volumesizegib": 100}, "gpulab:volumesizegib", "did you mean gpulab:volumeSizeGiB?"),
    ("unknown-namespace", {"gpulb:spot": True}, "gpulb:spot", "did you mean gpulab:spot?"),
    ("bad-region", {"aws:region": "tokyo"}, "aws:region", "ap-northeast-1"),
    ("bad-ami", {"gpulab:amis": {"ap-northeast-1": "ami-xyz"}}, "gpulab:amis.ap-northeast-1", "8 or 17"),
    ("ami-wrong-length", {"gpulab:amis": {"us-east-1": "ami-0123"}}, "gpulab:amis.us-east-1", "8 or 17"),
    ("ami-bad-region", {"gpulab:amis": {"mars-1": "ami-01234567"}}, "gpulab:amis.mars-1", "region code"),
    (
        "world-cidr",
        {"gpulab:sshAllowedCidrs": ["0.0.0.0/0"], "gpulab:keyName": "k"},
        "gpulab:sshAllowedCidrs[0]",
        "Session Manager",
    ),
    (
        "world-cidr-v6",
        {"gpulab:sshAllowedCidrs": ["::/0"], "gpulab:keyName": "k"},
        "gpulab:sshAllowedCidrs[0]",
        "Session Manager",
    ),
    (
        "second-cidr-too-wide",
        {"gpulab:sshAllowedCidrs": ["198.51.100.7/32", "10.0.0.0/8"], "gpulab:keyName": "k"},
        "gpulab:sshAllowedCidrs[1]",
        "Session Manager",
    ),
    ("cidr-garbage", {"gpulab:sshAllowedCidrs": ["my-ip"], "gpulab:keyName": "k"}, "gpulab:sshAllowedCidrs[0]", "/32"),
    (
        "cidr-host-bits",
        {"gpulab:sshAllowedCidrs": ["198.51.100.7/24"], "gpulab:keyName": "k"},
        "gpulab:sshAllowedCidrs[0]",
        "/32",
    ),
    (
        "cidrs-not-list",
        {"gpulab:sshAllowedCidrs": "198.51.100.7/32", "gpulab:keyName": "k"},
        "gpulab:sshAllowedCidrs",
        "YAML list",
    ),
    ("ssh-without-key", {"gpulab:sshAllowedCidrs": ["198.51.100.7/32"]}, "gpulab:keyName", "Session Manager"),
    ("short-token", {"gpulab:jupyterToken": "abc"}, "gpulab:jupyterToken", "make up"),
    (
        "zero-budget",
        {"gpulab:budget": {"monthlyLimitUsd": 0, "emails": ["a@example.com"]}},
        "gpulab:budget.monthlyLimitUsd",
        "above 0",
    ),
    (
        "negative-budget",
        {"gpulab:budget": {"monthlyLimitUsd": -5, "emails": ["a@example.com"]}},
        "gpulab:budget.monthlyLimitUsd",
        "above 0",
    ),
    (
        "bad-email",
        {"gpulab:budget": {"monthlyLimitUsd": 20, "emails": ["me-at-example"]}},
        "gpulab:budget.emails[0]",
        "name@example.com",
    ),
    ("no-emails", {"gpulab:budget": {"monthlyLimitUsd": 20, "emails": []}}, "gpulab:budget.emails", "at least 1"),
    (
        "budget-unknown-key",
        {"gpulab:budget": {"limit": 20, "emails": ["a@example.com"]}},
        "gpulab:budget.limit",
        "Fix: remove it",
    ),
    ("zero-epochs", {"gpulab:experiment": {"epochs": 0}}, "gpulab:experiment.epochs", "1 or more"),
    ("negative-lr", {"gpulab:experiment": {"lr": -0.1}}, "gpulab:experiment.lr", "above 0"),
    ("momentum-one", {"gpulab:experiment": {"momentum": 1.0}}, "gpulab:experiment.momentum", "below 1"),
    ("epochs-text", {"gpulab:experiment": {"epochs": "five"}}, "gpulab:experiment.epochs", "whole number"),
    ("bad-loader", {"gpulab:experiment": {"loader": "fast"}}, "gpulab:experiment.loader", "'tensor' or 'torchvision'"),
    (
        "experiment-typo",
        {"gpulab:experiment": {"batchsize": 32}},
        "gpulab:experiment.batchsize",
        "did you mean gpulab:experiment.batchSize?",
    ),
    ("amp-on-cpu", {"gpulab:experiment": {"amp": "fp16", "device": "cpu"}}, "gpulab:experiment", "set amp to 'off'"),
    ("small-disk", {"gpulab:volumeSizeGiB": 20}, "gpulab:volumeSizeGiB", "75 or more"),
    ("disk-text", {"gpulab:volumeSizeGiB": "ten"}, "gpulab:volumeSizeGiB", "whole number"),
    ("negative-idle", {"gpulab:idleStopMinutes": -1}, "gpulab:idleStopMinutes", "0 or more"),
    ("idle-too-short", {"gpulab:idleStopMinutes": 2}, "gpulab:idleStopMinutes", "5 or more"),
    ("lifetime-negative", {"gpulab:maxLifetimeHours": -3}, "gpulab:maxLifetimeHours", "0 or more"),
    ("spot-not-bool", {"gpulab:spot": "maybe"}, "gpulab:spot", "true or false"),
    ("public-vpc", {"gpulab:vpcCidr": "8.8.0.0/23"}, "gpulab:vpcCidr", "10.10.0.0/23"),
]


@pytest.mark.parametrize(("case", "override", "key", "fix"), BAD, ids=[c[0] for c in BAD])
def test_bad_value_is_refused_with_key_and_fix(case, override, key, fix):
    with pytest.raises(ConfigError) as caught:
        parse_settings({**GOOD, **override})
    text = str(caught.value)
    named = [p for p in caught.value.problems if p.key == key or key in p.message]
    assert named, f"{case}: no problem names {key!r}; got:\n{text}"
    assert any(fix in str(p) for p in named), f"{case}: the fix {fix!r} is missing from:\n{text}"


def test_there_are_at_least_25_distinct_bad_inputs():
    assert len({c[0] for c in BAD}) >= 25


def test_every_problem_is_reported_not_just_the_first():
    bad = {**GOOD, "gpulab:instanceType": "t3.micro", "gpulab:experiment": {"epochs": 0}, "gpulab:spto": True}
    with pytest.raises(ConfigError) as caught:
        parse_settings(bad)
    keys = {p.key for p in caught.value.problems}
    assert {"gpulab:instanceType", "gpulab:experiment.epochs", "gpulab:spto"} <= keys


def test_token_value_never_appears_in_errors():
    secret = "s3cret-but-short"
    with pytest.raises(ConfigError) as caught:
        parse_settings({**GOOD, "gpulab:jupyterToken": secret})
    assert secret not in str(caught.value)


def test_deploy_requires_a_token():
    with pytest.raises(ConfigError, match=r"gpulab:jupyterToken: is not set\. Fix: run `make up`"):
        parse_settings(GOOD, require_token=True)


def test_missing_region_is_named():
    with pytest.raises(ConfigError, match="aws:region: is not set"):
        parse_settings({"gpulab:instanceType": "g4dn.xlarge"})


def test_dev_stack_validates_with_the_tutorial_defaults():
    stack = load_stack_file(DEV)
    assert stack.region == "ap-northeast-1"
    assert stack.instance_type == "g4dn.xlarge"
    assert stack.amis == {}, "the dev stack must leave the AMI to the Deep Learning AMI lookup"
    assert not stack.ssh_enabled, "the dev stack must open no inbound port"
    exp = stack.experiment
    assert (exp.epochs, exp.batch_size, exp.test_batch_size, exp.lr, exp.momentum) == (5, 64, 1000, 0.01, 0.5)


def test_pulumi_passes_strings_and_json():
    """At deploy time Pulumi gives every value as text: numbers, booleans, lists and objects too."""
    stack = parse_settings(
        {
            **GOOD,
            "gpulab:volumeSizeGiB": "120",
            "gpulab:spot": "true",
            "gpulab:sshAllowedCidrs": '["198.51.100.7/32"]',
            "gpulab:keyName": "laptop",
            "gpulab:experiment": json.dumps({"epochs": 2, "runOnBoot": True}),
            "gpulab:jupyterToken": TOKEN,
        },
        require_token=True,
    )
    assert stack.volume_size_gib == 120 and stack.spot is True
    assert stack.ssh_allowed_cidrs == ["198.51.100.7/32"]
    assert stack.experiment.epochs == 2 and stack.experiment.run_on_boot
    assert stack.jupyter_token.get_secret_value() == TOKEN


def test_models_are_frozen():
    stack = load_stack_file(DEV)
    with pytest.raises(ValueError):
        stack.instance_type = "p5.48xlarge"
    with pytest.raises(ValueError):
        stack.experiment.epochs = 1


def test_experiment_config_is_usable_by_python_names():
    assert ExperimentConfig(batch_size=8).batch_size == 8
    assert ExperimentConfig.model_validate({"batchSize": 8}).batch_size == 8


def test_pulumi_yaml_describes_every_key_and_its_defaults_match():
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    described = project["template"]["config"]
    from config.loader import KNOWN

    top_keys = {k for k in KNOWN if "." not in k}
    for key in top_keys:
        full = "aws:region" if key == "region" else f"gpulab:{key}"
        assert described.get(full, {}).get("description"), f"Pulumi.yaml has no description for {full}"
    from config.stack import StackConfig

    fields = {(f.alias or n): f for n, f in StackConfig.model_fields.items()}
    for key, schema in project["config"].items():
        assert key in fields, f"Pulumi.yaml declares {key}, which the StackConfig model does not know"
        assert schema.get("description"), f"Pulumi.yaml's {key} has no description"
        assert schema["default"] == fields[key].get_default(call_default_factory=True), (
            f"Pulumi.yaml's default for {key} ({schema['default']!r}) differs from the model's"
        )


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "config", *args], cwd=ROOT, capture_output=True, text=True)


def test_cli_valid_file_exits_0_with_summary():
    result = run_cli("validate", "Pulumi.dev.yaml")
    assert result.returncode == 0, result.stderr
    assert "g4dn.xlarge" in result.stdout and "Session Manager only" in result.stdout
    assert len(result.stdout.splitlines()) <= 25, "the summary must fit on one screen"


def test_cli_invalid_file_exits_2_with_every_error(tmp_path):
    bad = tmp_path / "Pulumi.bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {"config": {"aws:region": "ap-northeast-1", "gpulab:instanceType": "m5.large", "gpulab:spto": True}}
        )
    )
    result = run_cli("validate", str(bad))
    assert result.returncode == 2
    assert "gpulab:instanceType" in result.stderr and "did you mean gpulab:spot?" in result.stderr


def test_cli_missing_file_is_an_error(tmp_path):
    result = run_cli("validate", str(tmp_path / "Pulumi.nope.yaml"))
    assert result.returncode == 2 and "no such file" in result.stderr


def test_cli_non_yaml_file_is_an_error(tmp_path):
    bad = tmp_path / "Pulumi.x.yaml"
    bad.write_text("config:\n  aws:region: [unclosed\n")
    result = run_cli("validate", str(bad))
    assert result.returncode == 2 and "not valid YAML" in result.stderr


def test_cli_encrypted_token_counts_as_set(tmp_path):
    stack_file = tmp_path / "Pulumi.enc.yaml"
    stack_file.write_text(
        "encryptionsalt: v1:abc\nconfig:\n  aws:region: us-east-1\n  gpulab:jupyterToken:\n    secure: v1:xyz\n"
    )
    result = run_cli("validate", str(stack_file))
    assert result.returncode == 0, result.stderr
