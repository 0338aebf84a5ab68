"""The GPU box itself: one EC2 instance on the Deep Learning AMI, locked down.

IMDSv2 only (hop limit 1, so containers cannot borrow the role), an encrypted gp3 root volume,
shutdown from inside means stop (the idle watcher relies on it), and user_data that names SSM
parameters but holds no secret. A code change moves the code parameter, not user_data, so the box
is never replaced for it (user_data_replace_on_change stays False).
"""

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from config.experiment import ExperimentConfig
from infra.bootstrap import BootstrapParams, render_user_data
from infra.common import TYPE_PREFIX, tags


@dataclass(frozen=True)
class GpuBoxArgs:
    stack: str
    region: str
    instance_type: str
    ami_id: str
    ami_pinned: bool
    subnet_id: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    instance_profile: pulumi.Input[str]
    key_name: str | None  # only when SSH is enabled
    volume_size_gib: int
    spot: bool
    bucket: pulumi.Input[str]
    code_parameter: str
    token_parameter: str
    experiment: ExperimentConfig
    idle_stop_minutes: int
    max_lifetime_hours: int
    # Parameters, archive and role policy the first boot reads: created before the instance starts.
    boot_needs: tuple[pulumi.Resource, ...] = ()


def _user_data(args: GpuBoxArgs, bucket: str) -> str:
    """The one call site of the bootstrap renderer: gzipped cloud-config, base64 for user_data_base64."""
    return render_user_data(
        BootstrapParams(
            region=args.region,
            stack=args.stack,
            bucket=bucket,
            code_parameter=args.code_parameter,
            token_parameter=args.token_parameter,
            experiment=args.experiment,
            idle_stop_minutes=args.idle_stop_minutes,
            max_lifetime_hours=args.max_lifetime_hours,
            spot=args.spot,
        )
    ).base64


class GpuBox(pulumi.ComponentResource):
    instance_id: pulumi.Output[str]
    public_ip: pulumi.Output[str]
    public_dns: pulumi.Output[str]
    ami_id: pulumi.Output[str]

    def __init__(self, name: str, args: GpuBoxArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{TYPE_PREFIX}:GpuBox", name, None, opts)

        market = None
        if args.spot:
            # Persistent + stop: an interruption stops the box (disk kept) and it restarts when capacity returns.
            market = {
                "market_type": "spot",
                "spot_options": {"instance_interruption_behavior": "stop", "spot_instance_type": "persistent"},
            }

        instance = aws.ec2.Instance(
            name,
            instance_type=args.instance_type,
            ami=args.ami_id,
            subnet_id=args.subnet_id,
            vpc_security_group_ids=[args.security_group_id],
            iam_instance_profile=args.instance_profile,
            key_name=args.key_name,
            associate_public_ip_address=True,
            metadata_options={"http_endpoint": "enabled", "http_tokens": "required", "http_put_response_hop_limit": 1},
            root_block_device={
                "volume_type": "gp3",
                "volume_size": args.volume_size_gib,
                "encrypted": True,
                "delete_on_termination": True,
                "tags": tags(args.stack, f"{name}-root"),
            },
            instance_initiated_shutdown_behavior="stop",
            instance_market_options=market,
            user_data_base64=pulumi.Output.from_input(args.bucket).apply(lambda bucket: _user_data(args, bucket)),
            user_data_replace_on_change=False,
            tags=tags(args.stack, name),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(args.boot_needs),
                # A newer Deep Learning AMI from the lookup must not replace a running box and its disk;
                # a pinned AMI is the user's explicit choice and does apply.
                ignore_changes=[] if args.ami_pinned else ["ami"],
            ),
        )

        self.instance_id = instance.id
        self.public_ip = instance.public_ip
        self.public_dns = instance.public_dns
        self.ami_id = instance.ami
        self.register_outputs(
            {
                "instanceId": instance.id,
                "publicIp": instance.public_ip,
                "publicDns": instance.public_dns,
                "amiId": instance.ami,
            }
        )
