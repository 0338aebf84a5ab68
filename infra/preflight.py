"""Checks and look-ups that run before any resource is registered, so a failure creates nothing.

- the availability zone: the first zone (sorted) where the instance type is offered;
- the vCPU quota: new accounts have 0 for GPU instances, and EC2's own error comes late and vague;
- the AMI: the pinned one for the region, else the newest Deep Learning AMI matching the pattern.
All are synchronous invokes, so `__main__.py` calls them before building any component.
"""

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from config.catalog import quota_class

QUOTA_CONSOLE = "https://console.aws.amazon.com/servicequotas/home/services/ec2/quotas/{code}"
# (quota class, spot?) -> (quota code, quota name as the Service Quotas console shows it)
QUOTAS: dict[tuple[str, bool], tuple[str, str]] = {
    ("G", False): ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("P", False): ("L-417A185B", "Running On-Demand P instances"),
    ("G", True): ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("P", True): ("L-7212CCBC", "All P Spot Instance Requests"),
}


@dataclass(frozen=True)
class QuotaCheck:
    code: str
    name: str
    limit_vcpus: float
    needed_vcpus: int


@dataclass(frozen=True)
class AmiChoice:
    id: str
    name: str  # the AMI's name, or the lookup pattern for a pinned AMI (whose name gpulab does not look up)
    source: str  # "gpulab:amis" or "lookup"
    login_user: str


def login_user(ami_name: str) -> str:
    """The Deep Learning AMIs log in as `ubuntu` on Ubuntu and `ec2-user` on Amazon Linux."""
    return "ubuntu" if "ubuntu" in ami_name.lower() else "ec2-user"


def choose_availability_zone(instance_type: str, region: str) -> str:
    offerings = aws.ec2.get_instance_type_offerings(
        filters=[{"name": "instance-type", "values": [instance_type]}],
        location_type="availability-zone",
    )
    zones = sorted(offerings.locations or [])
    if not zones:
        raise pulumi.RunError(
            f"{instance_type} is not offered in any availability zone of {region}. "
            "Fix: choose another gpulab:instanceType (e.g. g4dn.xlarge) or another aws:region"
        )
    # Sorted, so the choice is stable across runs and the subnet is never replaced by accident.
    return zones[0]


def check_quota(instance_type: str, spot: bool, region: str) -> QuotaCheck:
    """Raise a RunError when the account's vCPU quota cannot hold one instance of this type."""
    try:
        vcpus = int(aws.ec2.get_instance_type(instance_type=instance_type).default_vcpus)
    except Exception as err:
        raise pulumi.RunError(
            f"could not look up {instance_type} in {region} ({err}). "
            "Fix: check gpulab:instanceType and aws:region, and that your AWS credentials work"
        ) from None
    code, name = QUOTAS[(quota_class(instance_type), spot)]
    try:
        limit = float(aws.servicequotas.get_service_quota(service_code="ec2", quota_code=code).value)
    except Exception as err:
        # No servicequotas:GetServiceQuota permission, say: EC2 will still refuse a launch over quota.
        pulumi.log.warn(f"could not read the EC2 quota {code} ({name}) in {region}: {err}; continuing without it")
        return QuotaCheck(code, name, float("nan"), vcpus)
    if limit < vcpus:
        market = "Spot" if spot else "On-Demand"
        raise pulumi.RunError(
            f"the EC2 quota '{name}' ({code}) in {region} is {limit:g} vCPUs, but one {instance_type} needs "
            f"{vcpus} vCPUs ({market}). Nothing was created. Fix: request an increase to at least {vcpus} at "
            f"{QUOTA_CONSOLE.format(code=code)} (region {region}; approval can take hours to days), "
            "or choose a smaller gpulab:instanceType"
        )
    return QuotaCheck(code, name, limit, vcpus)


def resolve_ami(region: str, pinned: str | None, name_pattern: str) -> AmiChoice:
    if pinned:
        return AmiChoice(pinned, name_pattern, "gpulab:amis", login_user(name_pattern))
    try:
        ami = aws.ec2.get_ami(
            most_recent=True,
            owners=["amazon"],
            filters=[
                {"name": "name", "values": [name_pattern]},
                {"name": "architecture", "values": ["x86_64"]},
                {"name": "state", "values": ["available"]},
            ],
        )
    except Exception as err:
        raise pulumi.RunError(
            f"no Deep Learning AMI in {region} matches the name pattern {name_pattern!r} "
            f"(owner amazon, x86_64): {err}. Fix: pin an AMI with `gpulab:amis: {{{region}: ami-...}}`, "
            "or change gpulab:amiNamePattern to a current name (list them with `aws ec2 describe-images "
            f"--owners amazon --region {region} --filters 'Name=name,Values=Deep Learning*PyTorch*'`)"
        ) from None
    return AmiChoice(ami.id, ami.name, "lookup", login_user(ami.name))
