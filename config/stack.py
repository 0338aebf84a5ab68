"""The stack's settings: every `gpulab:*` key of `Pulumi.<stack>.yaml`, typed and validated.

Field aliases are the keys as written in the YAML (without the `gpulab:` namespace); `region` is
`aws:region`. Every message says what is wrong and how to fix it, because the reader is a person
looking at their stack file, not a Python traceback.
"""

import ipaddress
import re
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from config.catalog import GPU_FAMILIES, family_of
from config.experiment import ExperimentConfig

SSM_HINT = (
    "leave gpulab:sshAllowedCidrs empty and reach the box through AWS Session Manager (the stack prints the command)"
)
AMI_ID = re.compile(r"^ami-([0-9a-f]{8}|[0-9a-f]{17})$")
REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
INSTANCE_TYPE = re.compile(r"^([a-z0-9-]+)\.(nano|micro|small|medium|large|\d*xlarge|metal(-\d+xl)?)$")
MIN_TOKEN_CHARS = 32


def _gpu_families() -> str:
    return ", ".join(GPU_FAMILIES)


def _check_instance_type(value: str) -> str:
    match = INSTANCE_TYPE.match(value)
    if not match:
        raise ValueError(
            f"is not an EC2 instance type. Fix: use family.size, e.g. g4dn.xlarge (GPU families: {_gpu_families()})"
        )
    if family_of(value) not in GPU_FAMILIES:
        raise ValueError(
            f"is not a GPU instance (family {family_of(value)!r}). Fix: pick an NVIDIA GPU family: "
            f"{_gpu_families()}, e.g. g4dn.xlarge"
        )
    return value


def _check_region(value: str) -> str:
    if not REGION.match(value):
        raise ValueError("is not an AWS region name. Fix: use a region code such as ap-northeast-1 or us-east-1")
    return value


def _check_ami(value: str) -> str:
    if not AMI_ID.match(value):
        raise ValueError(
            "is not an AMI id. Fix: use 'ami-' followed by 8 or 17 lowercase hex digits, "
            "e.g. ami-0123456789abcdef0, or remove the entry to use the Deep Learning AMI lookup"
        )
    return value


def _check_ssh_cidr(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as err:
        raise ValueError(
            f"is not a CIDR block ({err}). Fix: write your own address as a CIDR, e.g. 203.0.113.7/32, or {SSM_HINT}"
        ) from None
    minimum = 16 if net.version == 4 else 48
    if net.prefixlen == 0:
        raise ValueError(f"opens SSH to the whole internet. Fix: {SSM_HINT}, or use your own address/32")
    if net.prefixlen < minimum:
        raise ValueError(
            f"is too wide (/{net.prefixlen}; at least /{minimum} is needed). "
            f"Fix: narrow it to your own address, e.g. x.x.x.x/32, or {SSM_HINT}"
        )
    return value


def _check_email(value: str) -> str:
    if not EMAIL.match(value):
        raise ValueError("is not an email address. Fix: write it as name@example.com")
    return value


InstanceType = Annotated[str, AfterValidator(_check_instance_type)]
Region = Annotated[str, AfterValidator(_check_region)]
AmiId = Annotated[str, AfterValidator(_check_ami)]
SshCidr = Annotated[str, AfterValidator(_check_ssh_cidr)]
Email = Annotated[str, AfterValidator(_check_email)]

_MODEL = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True)


class Budget(BaseModel):
    model_config = _MODEL

    monthly_limit_usd: float = Field(gt=0, le=1_000_000, description="Monthly cost limit in USD for the AWS Budget.")
    emails: list[Email] = Field(
        min_length=1, max_length=10, description="Who gets the 80% forecast and 100% actual alerts."
    )


class StackConfig(BaseModel):
    """All settings of one stack. Built once in `__main__.py` (or `python -m config validate`)."""

    model_config = _MODEL

    region: Region = Field(alias="region", description="aws:region, where everything is created.")
    instance_type: InstanceType = Field("g4dn.xlarge", description="EC2 GPU instance type.")
    amis: dict[Region, AmiId] = Field(
        default_factory=dict,
        description="Pinned AMI per region; a region not listed uses the latest PyTorch Deep Learning AMI.",
    )
    ami_name_pattern: str = Field(
        "Deep Learning OSS Nvidia Driver AMI GPU PyTorch * (Ubuntu 24.04) *",
        min_length=3,
        description="Name pattern (owner amazon, newest first) for the Deep Learning AMI lookup.",
    )
    key_name: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7e]+$",
        description="EC2 key pair for SSH; needed only with sshAllowedCidrs.",
    )
    ssh_allowed_cidrs: list[SshCidr] = Field(
        default_factory=list,
        max_length=20,
        description="CIDRs that may reach TCP 22. Empty: no inbound port at all (Session Manager only).",
    )
    jupyter_token: SecretStr | None = Field(
        None, description="Jupyter login token (secret). `make up` generates one when unset."
    )
    volume_size_gib: int = Field(
        100,
        alias="volumeSizeGiB",
        ge=75,
        le=16384,
        description="Root volume size in GiB (encrypted gp3). The DLAMI itself needs ~75.",
    )
    vpc_cidr: str = Field("10.10.0.0/23", description="The VPC's private address range (the tutorial's /23).")
    spot: bool = Field(False, description="Use a persistent Spot request that stops (not terminates) on interruption.")
    idle_stop_minutes: int = Field(
        30, ge=0, le=1440, description="Stop the instance after this many idle minutes; 0 disables the watcher."
    )
    max_lifetime_hours: int = Field(
        12, ge=0, le=720, description="Stop the instance this many hours after each start; 0 disables it."
    )
    budget: Budget | None = Field(None, description="An AWS Budget with email alerts; none when unset.")
    experiment: ExperimentConfig = Field(
        default_factory=ExperimentConfig, description="The experiment run on the box (see experiment's --help)."
    )

    @field_validator("jupyter_token")
    @classmethod
    def _token_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_CHARS:
            raise ValueError(
                f"is shorter than {MIN_TOKEN_CHARS} characters. Fix: unset it and let `make up` generate one, or "
                "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))' | "
                "pulumi config set --secret gpulab:jupyterToken`"
            )
        return value

    @field_validator("vpc_cidr")
    @classmethod
    def _private_vpc(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value, strict=True)
        except ValueError as err:
            raise ValueError(f"is not an IPv4 CIDR block ({err}). Fix: use e.g. 10.10.0.0/23") from None
        if not net.is_private or not 16 <= net.prefixlen <= 26:
            raise ValueError("must be a private range between /16 and /26. Fix: use e.g. 10.10.0.0/23")
        return value

    @field_validator("idle_stop_minutes")
    @classmethod
    def _idle_window_sane(cls, value: int) -> int:
        if 0 < value < 5:
            raise ValueError(
                "is too short: the watcher samples once a minute, so the box would stop while you type. "
                "Fix: use 5 or more, or 0 to disable idle stop"
            )
        return value

    @model_validator(mode="after")
    def _ssh_needs_key(self) -> "StackConfig":
        if self.ssh_allowed_cidrs and not self.key_name:
            raise ValueError(
                "gpulab:sshAllowedCidrs is set but gpulab:keyName is not. Fix: set gpulab:keyName to an EC2 key "
                f"pair in {self.region}, or {SSM_HINT}"
            )
        return self

    @property
    def ssh_enabled(self) -> bool:
        return bool(self.ssh_allowed_cidrs)

    def ami_override(self) -> str | None:
        """The pinned AMI for this stack's region, if the user pinned one."""
        return self.amis.get(self.region)
