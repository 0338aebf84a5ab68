"""Run the real gpulab Pulumi program (__main__.py) under Pulumi's mocks and record what it does.

The program reads the real Pulumi.dev.yaml `config:` block, stringified the way the Pulumi CLI hands
config to a program (text, with lists and objects as JSON), plus a test Jupyter token and any
overrides. The mocks answer like the AWS provider: resource state and invoke results use the
provider's camelCase keys, invokes are matched by their token. Every resource (type, name, inputs,
state, parent, options), every invoke and every stack export (and whether it is secret) is recorded.

    run = run_program({"gpulab:spot": True})
    run.of_type("aws:ec2/instance:Instance")[0].inputs["instanceMarketOptions"]

`invokes` replaces an answer by token: a dict, a callable(args) -> dict, or an Exception to raise
(the real provider fails an invoke with an error, e.g. getAmi's "Your query returned no results").
"""

from __future__ import annotations

import hashlib
import json
import runpy
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pulumi
import yaml
from pulumi.runtime import config as runtime_config
from pulumi.runtime import mocks as runtime_mocks
from pulumi.runtime import rpc
from pulumi.runtime.settings import get_root_resource, set_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

ROOT = Path(__file__).resolve().parents[1]
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]
STACK = "dev"
TEST_TOKEN = "gpulab-test-token-DO-NOT-LEAK-0123456789abcdef"
ACCOUNT = "123456789012"
SECRET_SIG = rpc._special_sig_key  # the marker a serialized secret value carries
SECRET_SIG_VALUE = rpc._special_secret_sig

# What the fake AWS account answers, shared by the default invoke answers and the tests' expectations.
LOOKUP_AMI_ID = "ami-0123456789abcdef0"
LOOKUP_AMI_NAME = "Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.9 (Ubuntu 24.04) 20260317"
OFFERED_ZONES = ["{region}c", "{region}a", "{region}d"]  # unsorted, as a real answer may be
VCPUS = {"g4dn.xlarge": 4, "g4dn.12xlarge": 48, "g5.xlarge": 4, "g6.xlarge": 4, "p3.2xlarge": 8, "p5.48xlarge": 192}
QUOTA_VCPUS = 64.0
ON_DEMAND_USD = {"g4dn.xlarge": "0.7100000000", "g5.xlarge": "1.4590000000", "p3.2xlarge": "4.1940000000"}
SPOT_USD = "0.2130000000"
INSTANCE_ID = "i-0abc1234def567890"
PUBLIC_IP = "203.0.113.10"

Answer = dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] | Exception


@dataclass
class Resource:
    type: str
    name: str
    id: str
    inputs: dict[str, Any]
    state: dict[str, Any]
    urn: str
    parent: str
    custom: bool
    retain_on_delete: bool
    ignore_changes: list[str]
    secret_inputs: set[str]
    provider: str
    dependencies: set[str] = field(default_factory=set)  # URNs this resource waits for


@dataclass
class Invoke:
    token: str
    args: dict[str, Any]
    provider: str


@dataclass
class ProgramRun:
    config: dict[str, str]
    resources: list[Resource] = field(default_factory=list)
    invokes: list[Invoke] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    error: BaseException | None = None

    def of_type(self, token: str) -> list[Resource]:
        return [r for r in self.resources if r.type == token]

    def one(self, token: str) -> Resource:
        found = self.of_type(token)
        assert len(found) == 1, f"expected exactly one {token}, found {len(found)}: {[r.name for r in found]}"
        return found[0]

    def invoked(self, token: str) -> list[Invoke]:
        return [i for i in self.invokes if i.token == token]

    @property
    def region(self) -> str:
        return self.config["aws:region"]


def stringify(value: Any) -> str:
    """A config value as the Pulumi CLI passes it to the program."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def dev_config(overrides: dict[str, Any] | None = None) -> dict[str, str]:
    """Pulumi.dev.yaml's config, a test token, then the overrides (None removes a key)."""
    raw = yaml.safe_load((ROOT / f"Pulumi.{STACK}.yaml").read_text())["config"]
    merged = {**raw, "gpulab:jupyterToken": TEST_TOKEN, **(overrides or {})}
    return {key: stringify(value) for key, value in merged.items() if value is not None}


def _filter(args: dict[str, Any], name: str) -> list[str]:
    for item in args.get("filters") or []:
        if item.get("name") == name:
            return list(item.get("values") or [])
    return []


def _price_document(instance_type: str, region: str, usd: str) -> str:
    sku = hashlib.sha1(f"{instance_type}{region}".encode()).hexdigest()[:16].upper()
    return json.dumps(
        {
            "product": {
                "productFamily": "Compute Instance",
                "attributes": {"instanceType": instance_type, "regionCode": region, "operatingSystem": "Linux"},
                "sku": sku,
            },
            "serviceCode": "AmazonEC2",
            "terms": {
                "OnDemand": {
                    f"{sku}.JRTCKXETXF": {
                        "priceDimensions": {
                            f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                                "unit": "Hrs",
                                "pricePerUnit": {"USD": usd},
                                "description": f"${float(usd):.3f} per On Demand Linux {instance_type} Instance Hour",
                            }
                        },
                        "sku": sku,
                        "effectiveDate": "2026-01-01T00:00:00Z",
                    }
                }
            },
        }
    )


class FakeAws:
    """Invoke answers and resource state shaped like pulumi-aws's (camelCase keys)."""

    def __init__(self, region: str, overrides: dict[str, Answer] | None):
        self.region = region
        self.overrides = overrides or {}

    def call(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        answer = self.overrides.get(token)
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(args)
        if answer is not None:
            return answer
        return self.default(token, args)

    def default(self, token: str, args: dict[str, Any]) -> dict[str, Any]:
        region = self.region
        if token == "aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings":
            types = _filter(args, "instance-type")
            zones = [z.format(region=region) for z in OFFERED_ZONES]
            return {
                "id": region,
                "filters": args.get("filters"),
                "locationType": args.get("locationType"),
                "instanceTypes": types[:1] * len(zones),
                "locationTypes": ["availability-zone"] * len(zones),
                "locations": zones,
            }
        if token == "aws:ec2/getInstanceType:getInstanceType":
            instance_type = args["instanceType"]
            return {"id": instance_type, "instanceType": instance_type, "defaultVcpus": VCPUS.get(instance_type, 4)}
        if token == "aws:servicequotas/getServiceQuota:getServiceQuota":
            code = args["quotaCode"]
            return {
                "id": f"arn:aws:servicequotas:{region}:{ACCOUNT}:ec2/{code}",
                "arn": f"arn:aws:servicequotas:{region}:{ACCOUNT}:ec2/{code}",
                "adjustable": True,
                "defaultValue": 0.0,
                "globalQuota": False,
                "quotaCode": code,
                "quotaName": "",
                "serviceCode": args["serviceCode"],
                "serviceName": "Amazon Elastic Compute Cloud (Amazon EC2)",
                "usageMetrics": [],
                "value": QUOTA_VCPUS,
            }
        if token == "aws:ec2/getAmi:getAmi":
            return {
                "id": LOOKUP_AMI_ID,
                "imageId": LOOKUP_AMI_ID,
                "name": LOOKUP_AMI_NAME,
                "architecture": "x86_64",
                "imageOwnerAlias": "amazon",
                "ownerId": "898082745236",
                "mostRecent": args.get("mostRecent"),
                "owners": args.get("owners"),
                "filters": args.get("filters"),
                "rootDeviceType": "ebs",
                "state": "available",
                "creationDate": "2026-03-17T00:00:00.000Z",
            }
        if token == "aws:pricing/getProduct:getProduct":
            values = {f["field"]: f["value"] for f in args["filters"]}
            usd = ON_DEMAND_USD.get(values["instanceType"])
            if usd is None:
                raise Exception(f"invoking {token}: Pricing product query did not return any elements")
            return {
                "id": "pricing",
                "serviceCode": args["serviceCode"],
                "filters": args["filters"],
                "result": _price_document(values["instanceType"], values["regionCode"], usd),
            }
        if token == "aws:ec2/getSpotPrice:getSpotPrice":
            return {
                "id": args.get("availabilityZone") or region,
                "availabilityZone": args.get("availabilityZone"),
                "instanceType": args.get("instanceType"),
                "filters": args.get("filters"),
                "spotPrice": SPOT_USD,
                "spotPriceTimestamp": "2026-03-17T00:00:00Z",
            }
        raise Exception(f"the test mocks have no answer for invoke {token}; add one to tests/pulumi_harness.py")

    def new_resource(self, typ: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        region = self.region
        state = dict(inputs)
        suffix = hashlib.sha1(f"{typ}/{name}".encode()).hexdigest()[:8]
        rid = f"{name}-{suffix}"
        if typ == "aws:s3/bucket:Bucket":
            bucket = f"{inputs.get('bucketPrefix', name)}{suffix}"
            rid = bucket
            state.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}", region=region)
        elif typ == "aws:ec2/instance:Instance":
            rid = INSTANCE_ID
            state.update(
                arn=f"arn:aws:ec2:{region}:{ACCOUNT}:instance/{rid}",
                publicIp=PUBLIC_IP,
                publicDns=f"ec2-{PUBLIC_IP.replace('.', '-')}.{region}.compute.amazonaws.com",
                privateIp="10.10.0.10",
                instanceState="running",
            )
        elif typ == "aws:ssm/parameter:Parameter":
            rid = inputs["name"]
            state["arn"] = f"arn:aws:ssm:{region}:{ACCOUNT}:parameter{inputs['name']}"
        elif typ in ("aws:iam/role:Role", "aws:iam/instanceProfile:InstanceProfile"):
            kind = "role" if typ.endswith("Role") else "instance-profile"
            state.setdefault("name", rid)
            rid = state["name"]
            state["arn"] = f"arn:aws:iam::{ACCOUNT}:{kind}/{rid}"
        elif typ.startswith("aws:ec2/"):
            prefix = {"vpc": "vpc", "subnet": "subnet", "internetGateway": "igw", "routeTable": "rtb"}
            kind = typ.split("/")[1].split(":")[0]
            if kind in prefix:
                rid = f"{prefix[kind]}-{suffix}"
            elif kind == "securityGroup":
                rid = f"sg-{suffix}"
            state["arn"] = f"arn:aws:ec2:{region}:{ACCOUNT}:{kind}/{rid}"
        if "tags" in inputs:
            state["tagsAll"] = dict(inputs["tags"])
        return rid, state


class ProviderError(grpc.RpcError):
    """How a provider's failed invoke reaches the program: a gRPC error from the engine, which the
    SDK turns into an ordinary exception the program can catch."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def code(self):
        return grpc.StatusCode.UNKNOWN

    def details(self):
        return self.message


class RecordingMocks(runtime_mocks.Mocks):
    def __init__(self, aws: FakeAws, run: ProgramRun):
        self.aws = aws
        self.run = run

    def call(self, args: runtime_mocks.MockCallArgs):
        self.run.invokes.append(Invoke(args.token, dict(args.args), args.provider))
        try:
            return self.aws.call(args.token, dict(args.args))
        except Exception as err:
            raise ProviderError(str(err)) from err

    def new_resource(self, args: runtime_mocks.MockResourceArgs):
        if not args.custom:
            return f"{args.name}-component", dict(args.inputs)
        if args.typ.startswith("pulumi:providers:"):
            return f"{args.name}-provider", dict(args.inputs)
        return self.aws.new_resource(args.typ, args.name, dict(args.inputs))


def _has_secret(value: Any) -> bool:
    """Whether a serialized protobuf value (or part of it) is a Pulumi secret."""
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        fields = value.struct_value.fields
        if SECRET_SIG in fields and fields[SECRET_SIG].string_value == SECRET_SIG_VALUE:
            return True
        return any(_has_secret(v) for v in fields.values())
    if kind == "list_value":
        return any(_has_secret(v) for v in value.list_value.values)
    return False


class RecordingMonitor(runtime_mocks.MockMonitor):
    """The mock monitor, also keeping what the default one drops: parent, options, secret inputs."""

    def __init__(self, mocks: RecordingMocks, run: ProgramRun):
        super().__init__(mocks)
        self.run = run

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        urn = response.urn
        self.run.resources.append(
            Resource(
                type=request.type,
                name=request.name,
                id=response.id,
                inputs=rpc.deserialize_properties_unwrap_secrets(request.object)[0],
                state=dict(self.resources[urn].state),
                urn=urn,
                parent=request.parent,
                custom=bool(request.custom),
                retain_on_delete=bool(request.retainOnDelete),
                ignore_changes=list(request.ignoreChanges),
                secret_inputs={k for k, v in request.object.fields.items() if _has_secret(v)},
                provider=request.provider,
                dependencies=set(request.dependencies),
            )
        )
        return response


def _resolve(value: Any) -> tuple[Any, bool]:
    if isinstance(value, pulumi.Output):
        return _sync_await(value.future()), bool(_sync_await(value.is_secret()))
    return value, False


def run_program(
    overrides: dict[str, Any] | None = None,
    invokes: dict[str, Answer] | None = None,
    preview: bool = False,
) -> ProgramRun:
    """Run __main__.py once with Pulumi.dev.yaml + overrides; never raises, the error is in `.error`."""
    config = dev_config(overrides)
    run = ProgramRun(config=config)
    aws = FakeAws(config.get("aws:region", "us-east-1"), invokes)
    mocks = RecordingMocks(aws, run)
    set_root_resource(None)  # a fresh stack for every run
    runtime_config.set_all_config(config, ["gpulab:jupyterToken"])
    runtime_mocks.set_mocks(mocks, project=PROJECT, stack=STACK, preview=preview, monitor=RecordingMonitor(mocks, run))
    program = str(ROOT / "__main__.py")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # as the Pulumi language host does for the program's folder
    try:
        _sync_await(run_pulumi_func(lambda: runpy.run_path(program, run_name="__main__")))
    except Exception as err:
        run.error = err
    root = get_root_resource()
    for name, value in getattr(root, "outputs", {}).items():
        run.outputs[name], secret = _resolve(value)
        if secret:
            run.secret_outputs.add(name)
    return run
