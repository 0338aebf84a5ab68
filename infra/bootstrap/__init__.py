"""Renders the instance's user_data from the template files beside this module.

user_data is one `#cloud-config` document: `write_files` puts gpulab's scripts, systemd units and
Jupyter config on the box, and `runcmd` enables the units and runs `gpulab-boot` once, waiting for
it, so `cloud-init status --wait` reports first-boot success or failure. Every later boot runs
gpulab-boot through systemd. What lands where is listed once, in FILES; add an entry there (e.g. the
guardrails' watcher and timers) and it is shipped, size-checked and linted by the tests.

The payload EC2 gets is that document gzipped (cloud-init unpacks gzip user_data itself), with
full-line comments left out of the shipped copies: the commented templates are ~19 KB, the payload
stays under half of EC2's 16 KB limit. Pass it base64-encoded: `user_data_base64=render_user_data(p).base64`.

user_data never contains a secret (the Jupyter token is read from SSM on the box) nor the code
archive's key (read from the SSM code parameter), so a code change never changes user_data.
"""

import base64
import gzip
import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Protocol

import yaml

from config.experiment import ExperimentConfig
from infra.guardrails_files import guardrail_files, guardrail_timers

HERE = Path(__file__).resolve().parent
# EC2 refuses user_data over 16 KB; we keep to half of it so there is room to grow.
USER_DATA_LIMIT = 16 * 1024
USER_DATA_BUDGET = USER_DATA_LIMIT // 2


@dataclass(frozen=True)
class BootstrapParams:
    region: str
    stack: str
    bucket: str
    # SSM String parameter whose value is the current archive's S3 key (code/gpulab-<sha>.tar.gz).
    # user_data names the parameter, not the key, so a code change never changes user_data and
    # never restarts the instance; the box reads it at boot and on refresh.
    code_parameter: str
    token_parameter: str  # SSM SecureString parameter name holding the Jupyter token
    experiment: ExperimentConfig
    idle_stop_minutes: int
    max_lifetime_hours: int
    spot: bool


@dataclass(frozen=True)
class InstanceFile:
    """One file cloud-init writes on the instance."""

    source: str  # path relative to this package, e.g. "templates/boot.sh"
    path: str  # where it goes on the instance
    mode: str = "0644"
    render: bool = False  # substitute ${name} from the params (only for files without shell `$`)
    enable: bool = False  # a systemd unit to `systemctl enable --now` at first boot
    # Full-line `#` comments are left out of the shipped copy (size); shebangs and shellcheck
    # directives stay. Set True for a file with `#` lines inside a heredoc or string.
    keep_comments: bool = False


# Everything user_data puts on the instance. Others rely on these paths (docs/bootstrap.md).
# templates/run-experiment.sh is not here: it travels in the code archive (infra/code_archive.py)
# and refresh installs it as /opt/gpulab/bin/run-experiment with the package it runs.
FILES: tuple[InstanceFile, ...] = (
    InstanceFile("templates/gpulab.env", "/etc/gpulab/gpulab.env", render=True),
    InstanceFile("templates/experiment.json", "/etc/gpulab/experiment.json", render=True),
    InstanceFile("templates/jupyter_server_config.py", "/etc/gpulab/jupyter_server_config.py"),
    InstanceFile("templates/common.sh", "/opt/gpulab/lib/common.sh"),
    InstanceFile("templates/boot.sh", "/opt/gpulab/bin/boot", "0755"),
    InstanceFile("templates/first-boot.sh", "/opt/gpulab/bin/first-boot", "0755"),
    InstanceFile("templates/refresh.sh", "/opt/gpulab/bin/refresh", "0755"),
    InstanceFile("templates/jupyter.sh", "/opt/gpulab/bin/jupyter", "0755"),
    InstanceFile("templates/gpulab-boot.service", "/etc/systemd/system/gpulab-boot.service"),
    InstanceFile("templates/gpulab-jupyter.service", "/etc/systemd/system/gpulab-jupyter.service"),
    InstanceFile("templates/gpulab-run@.service", "/etc/systemd/system/gpulab-run@.service"),
)
CLOUD_CONFIG = "templates/cloud-config.yaml"

_CHECKS: dict[str, tuple[re.Pattern[str], str]] = {
    "region": (re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$"), "an AWS region code such as ap-northeast-1"),
    "stack": (
        re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"),
        "letters, digits, '.', '_' or '-' (a Pulumi stack name)",
    ),
    "bucket": (re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"), "an S3 bucket name (3-63 of a-z, 0-9, '.', '-')"),
    "code_parameter": (re.compile(r"^/?[A-Za-z0-9_.-][A-Za-z0-9_./-]{0,1010}$"), "an SSM parameter name"),
    "token_parameter": (re.compile(r"^/?[A-Za-z0-9_.-][A-Za-z0-9_./-]{0,1010}$"), "an SSM parameter name"),
}


class BootstrapError(ValueError):
    """A BootstrapParams value that cannot go into user_data; the message names it and the fix."""


def validate(params: BootstrapParams) -> None:
    """Refuse anything that could break out of a shell word or a YAML scalar on the instance."""
    for name, (pattern, expected) in _CHECKS.items():
        value = getattr(params, name)
        if not isinstance(value, str) or not pattern.match(value):
            raise BootstrapError(
                f"BootstrapParams.{name}={value!r} is not {expected}. Fix: pass the plain resolved value "
                "(inside Output.apply), not an Output or text with spaces, quotes or newlines"
            )
    for name in ("idle_stop_minutes", "max_lifetime_hours"):
        value = getattr(params, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise BootstrapError(f"BootstrapParams.{name}={value!r} must be a whole number >= 0")
    if not isinstance(params.spot, bool):
        raise BootstrapError(f"BootstrapParams.spot={params.spot!r} must be True or False")
    if not isinstance(params.experiment, ExperimentConfig):
        raise BootstrapError(f"BootstrapParams.experiment must be an ExperimentConfig, got {type(params.experiment)}")


def _values(params: BootstrapParams) -> dict[str, str]:
    plain = {name: getattr(params, name) for name in _CHECKS}
    values = {name: shlex.quote(value) for name, value in plain.items()}
    values.update(
        run_on_boot="true" if params.experiment.run_on_boot else "false",
        idle_stop_minutes=str(params.idle_stop_minutes),
        max_lifetime_hours=str(params.max_lifetime_hours),
        spot="true" if params.spot else "false",
        experiment_json=json.dumps(params.experiment.model_dump(mode="json", by_alias=True), sort_keys=True),
    )
    return values


def _strip_comments(text: str) -> str:
    """The shipped copy: full-line comments dropped, and bash scripts' indentation too (outside heredocs)."""
    bash = text.startswith("#!/usr/bin/env bash")
    heredoc_end = None
    kept = []
    for number, line in enumerate(text.splitlines(keepends=True)):
        if heredoc_end is not None:  # heredoc bodies are data: keep them exactly
            kept.append(line)
            heredoc_end = None if line.strip() == heredoc_end else heredoc_end
            continue
        if line.lstrip().startswith("#") and not (
            (number == 0 and line.startswith(("#!", "#cloud-config"))) or "shellcheck " in line
        ):
            continue
        if bash:
            line = line.lstrip(" ")
            if not line.strip():
                continue
            match = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", line)
            heredoc_end = match.group(1) if match else None
        kept.append(line)
    return "".join(kept)


def instance_files(params: BootstrapParams, files: tuple[InstanceFile, ...] = FILES) -> list[tuple[InstanceFile, str]]:
    """Each file with the text it will have on the instance."""
    validate(params)
    values = _values(params)
    rendered = []
    for spec in files:
        text = (HERE / spec.source).read_text(encoding="utf-8")
        text = text if spec.keep_comments else _strip_comments(text)
        rendered.append((spec, Template(text).substitute(values) if spec.render else text))
    return rendered


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


class ExtraFile(Protocol):
    """A file rendered elsewhere (e.g. the guardrails' watcher): anything with path, mode and text."""

    path: str
    mode: str
    text: str


def _cloud_config(
    params: BootstrapParams, files: tuple[InstanceFile, ...], extra: Sequence[ExtraFile], enable: Sequence[str]
) -> str:
    entries = [
        {"path": spec.path, "permissions": spec.mode, "content": text} for spec, text in instance_files(params, files)
    ]
    # The guardrails (idle watcher, max-lifetime timer) always ride along, as the stack configures them.
    extra = [*guardrail_files(params.idle_stop_minutes, params.max_lifetime_hours), *extra]
    enable = [*guardrail_timers(params.idle_stop_minutes, params.max_lifetime_hours), *enable]
    entries += [  # owner: root by default
        {"path": f.path, "permissions": f.mode, "content": _strip_comments(f.text)} for f in extra
    ]
    paths = [entry["path"] for entry in entries]
    if len(set(paths)) != len(paths):
        raise BootstrapError(f"two files for the same instance path in {paths}. Fix: drop the duplicate entry")
    units = [Path(spec.path).name for spec in files if spec.enable] + list(enable)
    for unit in units:
        if not re.match(r"^[A-Za-z0-9@_.-]+\.(service|timer|path|socket)$", unit) or unit == "gpulab-boot.service":
            raise BootstrapError(
                f"cannot enable {unit!r}: not a unit file name (gpulab-boot.service is always enabled)"
            )
    write_files = yaml.dump(entries, Dumper=_Dumper, sort_keys=False, width=1 << 16, allow_unicode=False)
    enable_lines = "".join(f"  - [systemctl, enable, --now, {unit}]\n" for unit in units)
    template = Template(_strip_comments((HERE / CLOUD_CONFIG).read_text(encoding="utf-8")))
    return template.substitute(
        _values(params) | {"write_files": write_files.rstrip("\n"), "enable_units": enable_lines}
    )


@dataclass(frozen=True)
class UserData:
    """The final user_data: `text` gzipped. Pass `.base64` as the instance's `user_data_base64`."""

    text: str  # the cloud-config as cloud-init sees it after unpacking
    payload: bytes  # what EC2 stores (gzip; cloud-init detects and unpacks it)

    @property
    def base64(self) -> str:
        return base64.b64encode(self.payload).decode("ascii")

    @property
    def size(self) -> int:
        """Bytes counted against EC2's 16 KB limit (the raw payload, before base64)."""
        return len(self.payload)


def render_parts(
    params: BootstrapParams,
    files: tuple[InstanceFile, ...] = FILES,
    extra: Sequence[ExtraFile] = (),
    enable: Sequence[str] = (),
) -> dict[str, str]:
    """The readable form: each cloud-init part by name (one `#cloud-config` today), files inline as text."""
    return {"cloud-config": _cloud_config(params, files, extra, enable)}


def render_user_data(
    params: BootstrapParams,
    files: tuple[InstanceFile, ...] = FILES,
    extra: Sequence[ExtraFile] = (),
    enable: Sequence[str] = (),
) -> UserData:
    """The user_data for the instance: `aws.ec2.Instance(..., user_data_base64=render_user_data(p).base64)`.

    Never contains a secret or the code archive's key, so it changes only when a template or a stack
    setting does. Deterministic: gzip mtime 0, so the same input gives the same bytes.
    `extra`: files rendered elsewhere, written as given; `enable`: their units to `enable --now`.
    """
    text = _cloud_config(params, files, extra, enable)
    payload = gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0)
    if len(payload) > USER_DATA_LIMIT:
        raise BootstrapError(
            f"user_data is {len(payload)} bytes gzipped, over EC2's {USER_DATA_LIMIT}. Fix: shrink the templates"
        )
    return UserData(text=text, payload=payload)


def decode_user_data(user_data_base64: str) -> str:
    """The cloud-config text inside a `user_data_base64` value (for tests and `pulumi stack` inspection)."""
    return gzip.decompress(base64.b64decode(user_data_base64)).decode("utf-8")
