"""What the box costs: the on-demand hourly price, one forgotten day, and the spot price when spot.

The price comes from the AWS Price List API at deploy time (only served from us-east-1, hence the
explicit provider). When that call fails (no pricing:GetProducts permission, an ambiguous match),
a small table is used instead and the `costSource` output says so. Prices exclude the EBS volume
(gp3, about $0.08-0.10 per GiB-month) and data transfer.
"""

import json
import math
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.common import TYPE_PREFIX

PRICING_REGION = "us-east-1"
HOURS_PER_DAY = 24
# Fallback: USD per hour, Linux, shared tenancy, on-demand, from the AWS EC2 On-Demand pricing page
# (https://aws.amazon.com/ec2/pricing/on-demand/) as published in 2025. The Tokyo g4dn.xlarge figure
# matches the tutorial's "about $17 a day". Only used when the Price List API gives no answer.
FALLBACK_TABLE_SOURCE = "table: AWS EC2 On-Demand pricing page, Linux, 2025 (Price List API unavailable)"
FALLBACK_USD_PER_HOUR: dict[tuple[str, str], float] = {
    ("g4dn.xlarge", "us-east-1"): 0.526,
    ("g4dn.xlarge", "us-west-2"): 0.526,
    ("g4dn.xlarge", "ap-northeast-1"): 0.71,
    ("g4dn.2xlarge", "us-east-1"): 0.752,
    ("g5.xlarge", "us-east-1"): 1.006,
    ("g6.xlarge", "us-east-1"): 0.8048,
    ("p3.2xlarge", "us-east-1"): 3.06,
}


@dataclass(frozen=True)
class CostArgs:
    instance_type: str
    region: str
    availability_zone: str
    spot: bool


def parse_on_demand_usd(price_list_json: str) -> float:
    """The hourly USD price in one Price List API product document (terms.OnDemand.*.priceDimensions.*)."""
    document = json.loads(price_list_json)
    for term in document["terms"]["OnDemand"].values():
        for dimension in term["priceDimensions"].values():
            if dimension.get("unit") == "Hrs":
                return float(dimension["pricePerUnit"]["USD"])
    raise ValueError("no hourly on-demand price dimension in the price list entry")


def on_demand_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    return [
        {"field": "instanceType", "value": instance_type},
        {"field": "regionCode", "value": region},
        {"field": "operatingSystem", "value": "Linux"},
        {"field": "tenancy", "value": "Shared"},
        {"field": "preInstalledSw", "value": "NA"},
        {"field": "capacitystatus", "value": "Used"},
        {"field": "licenseModel", "value": "No License required"},
    ]


class CostEstimate(pulumi.ComponentResource):
    hourly_usd: float | None
    forgotten_day_usd: float | None
    spot_hourly_usd: float | None
    source: str

    def __init__(self, name: str, args: CostArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{TYPE_PREFIX}:CostEstimate", name, None, opts)
        pricing = aws.Provider("pricing", region=PRICING_REGION, opts=pulumi.ResourceOptions(parent=self))

        hourly: float | None
        try:
            product = aws.pricing.get_product(
                service_code="AmazonEC2",
                filters=on_demand_filters(args.instance_type, args.region),
                opts=pulumi.InvokeOptions(provider=pricing),
            )
            hourly = parse_on_demand_usd(product.result)
            source = f"AWS Price List API ({args.region}, Linux, on-demand)"
        except Exception as err:
            hourly = FALLBACK_USD_PER_HOUR.get((args.instance_type, args.region))
            source = (
                FALLBACK_TABLE_SOURCE if hourly is not None else "unknown (Price List API unavailable, not in table)"
            )
            pulumi.log.warn(
                f"could not read the price of {args.instance_type} in {args.region} ({err}); using {source}"
            )

        spot_hourly: float | None = None
        if args.spot:
            try:
                spot = aws.ec2.get_spot_price(
                    instance_type=args.instance_type,
                    availability_zone=args.availability_zone,
                    filters=[{"name": "product-description", "values": ["Linux/UNIX"]}],
                )
                spot_hourly = float(spot.spot_price)
            except Exception as err:
                pulumi.log.warn(f"could not read the spot price of {args.instance_type}: {err}")

        self.hourly_usd = round(hourly, 4) if hourly is not None and math.isfinite(hourly) else None
        self.forgotten_day_usd = round(self.hourly_usd * HOURS_PER_DAY, 2) if self.hourly_usd is not None else None
        self.spot_hourly_usd = round(spot_hourly, 4) if spot_hourly is not None else None
        self.source = source
        self.register_outputs(
            {
                "hourlyCostUsd": self.hourly_usd,
                "forgottenDayCostUsd": self.forgotten_day_usd,
                "spotHourlyCostUsd": self.spot_hourly_usd,
                "costSource": source,
            }
        )
