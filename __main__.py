"""The gpulab Pulumi program: parse the stack config once, check, build the components, export outputs.

Order matters: the config and the preflight (zone, quota, AMI) run before any resource is
registered, so a bad value or a missing quota creates nothing.
"""

from pathlib import Path

import pulumi

from config.loader import ConfigError, parse_settings
from infra import outputs
from infra.access import Access, AccessArgs
from infra.code_archive import build_code_archive
from infra.common import tags
from infra.cost import CostArgs, CostEstimate
from infra.guardrails import Guardrails, GuardrailsArgs
from infra.instance import GpuBox, GpuBoxArgs
from infra.network import Network, NetworkArgs
from infra.preflight import check_quota, choose_availability_zone, resolve_ami
from infra.settings import pulumi_settings
from infra.storage import Storage, StorageArgs

BUILD_DIR = Path(__file__).resolve().parent / ".gpulab" / "build"

stack_name = pulumi.get_stack()
try:
    stack = parse_settings(
        pulumi_settings(), source=f"stack {stack_name!r} (Pulumi.{stack_name}.yaml)", require_token=True
    )
except ConfigError as err:
    # Raised before any resource is registered: nothing is created.
    raise pulumi.RunError(str(err)) from None
assert stack.jupyter_token is not None  # require_token=True guarantees it
token = stack.jupyter_token.get_secret_value()

# Preflight: invokes only, no resources yet.
zone = choose_availability_zone(stack.instance_type, stack.region)
check_quota(stack.instance_type, stack.spot, stack.region)
ami = resolve_ami(stack.region, stack.ami_override(), stack.ami_name_pattern)

storage = Storage("artifacts", StorageArgs(stack=stack_name, archive=build_code_archive(BUILD_DIR)))
network = Network("network", NetworkArgs(stack=stack_name, vpc_cidr=stack.vpc_cidr, availability_zone=zone))
access = Access(
    "access",
    AccessArgs(
        stack=stack_name,
        region=stack.region,
        vpc_id=network.vpc_id,
        ssh_allowed_cidrs=tuple(stack.ssh_allowed_cidrs),
        jupyter_token=token,
        bucket_arn=storage.bucket_arn,
        code_parameter_arn=storage.code_parameter_arn,
    ),
)
box = GpuBox(
    "gpu-box",
    GpuBoxArgs(
        stack=stack_name,
        region=stack.region,
        instance_type=stack.instance_type,
        ami_id=ami.id,
        ami_pinned=ami.source == "gpulab:amis",
        subnet_id=network.subnet_id,
        security_group_id=access.security_group_id,
        instance_profile=access.instance_profile_name,
        key_name=stack.key_name if stack.ssh_enabled else None,
        volume_size_gib=stack.volume_size_gib,
        spot=stack.spot,
        bucket=storage.bucket_name,
        code_parameter=storage.code_parameter_name,
        token_parameter=access.token_parameter_name,
        experiment=stack.experiment,
        idle_stop_minutes=stack.idle_stop_minutes,
        max_lifetime_hours=stack.max_lifetime_hours,
        boot_needs=(*storage.boot_needs, *access.boot_needs),
    ),
)
guardrails = Guardrails(
    "guardrails",
    GuardrailsArgs(
        instance_id=box.instance_id,
        region=stack.region,
        stack=stack_name,
        idle_stop_minutes=stack.idle_stop_minutes,
        max_lifetime_hours=stack.max_lifetime_hours,
        budget=stack.budget,
        tags=tags(stack_name, "guardrails"),
    ),
)
cost = CostEstimate(
    "cost", CostArgs(instance_type=stack.instance_type, region=stack.region, availability_zone=zone, spot=stack.spot)
)

pulumi.export("region", stack.region)
pulumi.export("instanceId", box.instance_id)
pulumi.export("publicIp", box.public_ip)
pulumi.export("publicDns", box.public_dns)
pulumi.export("amiId", box.ami_id)
pulumi.export("artifactsBucket", storage.bucket_name)
pulumi.export(
    "ssmPortForwardCommand", box.instance_id.apply(lambda i: outputs.ssm_port_forward_command(i, stack.region))
)
if stack.ssh_enabled:
    user, key = ami.login_user, stack.key_name or ""
    pulumi.export("sshCommand", box.public_ip.apply(lambda ip: outputs.ssh_command(key, user, ip)))
pulumi.export("jupyterUrl", pulumi.Output.secret(outputs.jupyter_url(token)))
pulumi.export("syncResultsCommand", storage.bucket_name.apply(outputs.sync_results_command))
pulumi.export("refreshCodeCommand", box.instance_id.apply(lambda i: outputs.refresh_code_command(i, stack.region)))
pulumi.export("hourlyCostUsd", cost.hourly_usd)
pulumi.export("forgottenDayCostUsd", cost.forgotten_day_usd)
pulumi.export("costSource", cost.source)
if stack.spot:
    pulumi.export("spotHourlyCostUsd", cost.spot_hourly_usd)
for name, summary in guardrails.summary.items():
    pulumi.export(name, summary)
