"""Who and what may reach the box: its security group, its instance role, and the Jupyter token.

Inbound: nothing, unless gpulab:sshAllowedCidrs is set; then TCP 22 from exactly those CIDRs.
Jupyter listens on loopback and is reached through a Session Manager or SSH tunnel, never a port.
The role can use Session Manager, read code/, read and write runs/, and read two SSM parameters.
"""

import ipaddress
import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.common import TYPE_PREFIX, partition, tags, token_parameter_name

SSH_PORT = 22


@dataclass(frozen=True)
class AccessArgs:
    stack: str
    region: str
    vpc_id: pulumi.Input[str]
    ssh_allowed_cidrs: tuple[str, ...]
    jupyter_token: str
    bucket_arn: pulumi.Input[str]
    code_parameter_arn: pulumi.Input[str]


def instance_policy(bucket_arn: str, token_parameter_arn: str, code_parameter_arn: str) -> str:
    """Least privilege for the box. SecureString decryption with the AWS managed aws/ssm key needs no
    kms statement: that key's policy already lets the account's principals decrypt through SSM."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "ReadCode", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"{bucket_arn}/code/*"},
                {
                    "Sid": "ReadWriteRuns",
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                    "Resource": f"{bucket_arn}/runs/*",
                },
                {
                    "Sid": "ListCodeAndRuns",
                    "Effect": "Allow",
                    "Action": ["s3:ListBucket"],
                    "Resource": bucket_arn,
                    "Condition": {"StringLike": {"s3:prefix": ["code/*", "runs/*"]}},
                },
                {
                    "Sid": "ReadGpulabParameters",
                    "Effect": "Allow",
                    "Action": ["ssm:GetParameter"],
                    "Resource": [token_parameter_arn, code_parameter_arn],
                },
            ],
        },
        indent=2,
    )


class Access(pulumi.ComponentResource):
    security_group_id: pulumi.Output[str]
    instance_profile_name: pulumi.Output[str]
    token_parameter_name: str

    def __init__(self, name: str, args: AccessArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{TYPE_PREFIX}:Access", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        group = aws.ec2.SecurityGroup(
            "box",
            vpc_id=args.vpc_id,
            description="gpulab GPU box: all egress; SSH only from gpulab:sshAllowedCidrs; Jupyter never exposed",
            tags=tags(args.stack, "box"),
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            "all-egress",
            security_group_id=group.id,
            ip_protocol="-1",
            cidr_ipv4="0.0.0.0/0",
            description="packages, S3, SSM and the Session Manager channel",
            tags=tags(args.stack, "all-egress"),
            opts=child,
        )
        for index, cidr in enumerate(args.ssh_allowed_cidrs):
            family = "cidr_ipv6" if ipaddress.ip_network(cidr).version == 6 else "cidr_ipv4"
            aws.vpc.SecurityGroupIngressRule(
                f"ssh-{index}",
                security_group_id=group.id,
                ip_protocol="tcp",
                from_port=SSH_PORT,
                to_port=SSH_PORT,
                description=f"SSH from {cidr} (gpulab:sshAllowedCidrs)",
                tags=tags(args.stack, f"ssh-{index}"),
                opts=child,
                **{family: cidr},
            )

        token = aws.ssm.Parameter(
            "jupyter-token",
            name=token_parameter_name(args.stack),
            type="SecureString",
            value=pulumi.Output.secret(args.jupyter_token),
            description="Jupyter login token of the gpulab box; read on the box at boot, never in user_data.",
            tags=tags(args.stack, "jupyter-token"),
            opts=child,
        )

        role = aws.iam.Role(
            "box",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
            description="gpulab GPU box: Session Manager, its code/ and runs/ in the artifacts bucket, its parameters",
            tags=tags(args.stack, "box"),
            opts=child,
        )
        aws.iam.RolePolicyAttachment(
            "ssm-core",
            role=role.name,
            policy_arn=f"arn:{partition(args.region)}:iam::aws:policy/AmazonSSMManagedInstanceCore",
            opts=child,
        )
        role_policy = aws.iam.RolePolicy(
            "box",
            role=role.id,
            policy=pulumi.Output.all(args.bucket_arn, token.arn, args.code_parameter_arn).apply(
                lambda arns: instance_policy(*arns)
            ),
            opts=child,
        )
        profile = aws.iam.InstanceProfile("box", role=role.name, tags=tags(args.stack, "box"), opts=child)

        self.security_group_id = group.id
        self.instance_profile_name = profile.name
        self.role_arn = role.arn
        self.token_parameter_name = token_parameter_name(args.stack)
        # What the box reads at its first boot: it must exist before the instance starts.
        self.boot_needs = [token, role_policy]
        self.register_outputs(
            {
                "securityGroupId": group.id,
                "roleArn": role.arn,
                "instanceProfile": profile.name,
                "tokenParameter": token.name,
            }
        )
