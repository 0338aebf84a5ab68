"""The tutorial's network: one VPC, one public subnet in one availability zone, an internet gateway.

No NAT gateway (it would cost more per month than a forgotten day of the GPU). The subnet's zone is
chosen by the preflight so the instance type is actually offered there.
"""

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.common import TYPE_PREFIX, tags


@dataclass(frozen=True)
class NetworkArgs:
    stack: str
    vpc_cidr: str
    availability_zone: str


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{TYPE_PREFIX}:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        vpc = aws.ec2.Vpc(
            "vpc",
            cidr_block=args.vpc_cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,  # the instance gets a public DNS name, used in the outputs
            tags=tags(args.stack, "vpc"),
            opts=child,
        )
        # The whole VPC range in one subnet, as the tutorial does: one box needs no second tier.
        subnet = aws.ec2.Subnet(
            "public",
            vpc_id=vpc.id,
            cidr_block=args.vpc_cidr,
            availability_zone=args.availability_zone,
            map_public_ip_on_launch=True,
            tags=tags(args.stack, "public"),
            opts=child,
        )
        igw = aws.ec2.InternetGateway("igw", vpc_id=vpc.id, tags=tags(args.stack, "igw"), opts=child)
        table = aws.ec2.RouteTable("public", vpc_id=vpc.id, tags=tags(args.stack, "public"), opts=child)
        aws.ec2.Route(
            "default", route_table_id=table.id, destination_cidr_block="0.0.0.0/0", gateway_id=igw.id, opts=child
        )
        aws.ec2.RouteTableAssociation("public", subnet_id=subnet.id, route_table_id=table.id, opts=child)

        self.vpc_id = vpc.id
        self.subnet_id = subnet.id
        self.availability_zone = args.availability_zone
        self.register_outputs(
            {"vpcId": vpc.id, "subnetId": subnet.id, "availabilityZone": args.availability_zone, "igwId": igw.id}
        )
