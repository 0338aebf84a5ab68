"""Policies for the infrastructure: the real __main__.py on the real Pulumi.dev.yaml, under mocks.

Each test is one rule. Each program configuration runs once per module (fixtures below).
"""

import fnmatch
import importlib
import ipaddress
import json
import re

import pulumi
import pytest
from pulumi_harness import (
    INSTANCE_ID,
    LOOKUP_AMI_ID,
    LOOKUP_AMI_NAME,
    PUBLIC_IP,
    TEST_TOKEN,
    ProgramRun,
    run_program,
)

from config.stack import StackConfig
from infra.bootstrap import decode_user_data
from infra.code_archive import build_code_archive
from infra.storage import bucket_prefix

INSTANCE = "aws:ec2/instance:Instance"
PARAMETER = "aws:ssm/parameter:Parameter"
SSH_CIDRS = ["198.51.100.7/32", "2001:db8:1234::/64"]
PINNED_AMI = "ami-0fedcba9876543210"
OTHER_REGION_AMI = "ami-0aaaabbbbccccdddd"
JUPYTER_PORTS = (8888, 8931)


# ---- program runs, one per configuration -------------------------------------------------------


def ok(run: ProgramRun) -> ProgramRun:
    assert run.error is None, f"the program failed: {run.error}"
    return run


@pytest.fixture(scope="module")
def dev():
    return ok(run_program())


@pytest.fixture(scope="module")
def ssh():
    return ok(
        run_program({"gpulab:keyName": "laptop", "gpulab:sshAllowedCidrs": SSH_CIDRS, "gpulab:volumeSizeGiB": 150})
    )


@pytest.fixture(scope="module")
def spot():
    return ok(run_program({"gpulab:spot": True}))


@pytest.fixture(scope="module")
def pinned():
    return ok(run_program({"gpulab:amis": {"ap-northeast-1": PINNED_AMI}}))


@pytest.fixture(scope="module")
def unmapped():
    """us-east-1 is not in gpulab:amis, so its AMI comes from the lookup (answered with a us-east-1 id)."""
    answer = {"id": OTHER_REGION_AMI, "imageId": OTHER_REGION_AMI, "name": LOOKUP_AMI_NAME, "architecture": "x86_64"}
    return ok(
        run_program(
            {"aws:region": "us-east-1", "gpulab:amis": {"ap-northeast-1": PINNED_AMI}},
            invokes={"aws:ec2/getAmi:getAmi": answer},
        )
    )


@pytest.fixture(scope="module")
def all_ok(dev, ssh, spot, pinned, unmapped):
    return [dev, ssh, spot, pinned, unmapped]


def quota_answer(value):
    return lambda args: {"quotaCode": args["quotaCode"], "serviceCode": "ec2", "value": value, "adjustable": True}


# ---- helpers -------------------------------------------------------------------------------------


def ingress_rules(run: ProgramRun):
    """(from, to, protocol, cidr) of every inbound rule, in any of the three ways pulumi-aws can write one."""
    rules = []
    for group in run.of_type("aws:ec2/securityGroup:SecurityGroup"):
        for rule in group.inputs.get("ingress") or []:
            for cidr in (rule.get("cidrBlocks") or []) + (rule.get("ipv6CidrBlocks") or []):
                rules.append((rule.get("fromPort"), rule.get("toPort"), rule.get("protocol"), cidr))
    for rule in run.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"):
        cidr = rule.inputs.get("cidrIpv4") or rule.inputs.get("cidrIpv6")
        rules.append((rule.inputs.get("fromPort"), rule.inputs.get("toPort"), rule.inputs.get("ipProtocol"), cidr))
    for rule in run.of_type("aws:ec2/securityGroupRule:SecurityGroupRule"):
        if rule.inputs.get("type") == "ingress":
            for cidr in (rule.inputs.get("cidrBlocks") or []) + (rule.inputs.get("ipv6CidrBlocks") or []):
                rules.append(
                    (rule.inputs.get("fromPort"), rule.inputs.get("toPort"), rule.inputs.get("protocol"), cidr)
                )
    return rules


def policy_documents(run: ProgramRun):
    """(resource name, parsed document) of every IAM or bucket policy the program writes."""
    docs = []
    for token, key in [
        ("aws:iam/rolePolicy:RolePolicy", "policy"),
        ("aws:iam/policy:Policy", "policy"),
        ("aws:s3/bucketPolicy:BucketPolicy", "policy"),
        ("aws:iam/role:Role", "assumeRolePolicy"),
    ]:
        for resource in run.of_type(token):
            docs.append((f"{token} {resource.name}", json.loads(resource.inputs[key])))
    return docs


def as_list(value):
    return value if isinstance(value, list) else [value]


def user_data(run: ProgramRun) -> str:
    encoded = run.one(INSTANCE).inputs.get("userDataBase64")
    assert encoded, "the instance has no user_data_base64"
    return decode_user_data(encoded)


def pulumi_aws_class(token: str):
    """aws:ec2/vpc:Vpc -> pulumi_aws.ec2.Vpc"""
    _, module_path, name = token.split(":")
    module = importlib.import_module(f"pulumi_aws.{module_path.split('/')[0]}")
    return getattr(module, name)


# ---- network ------------------------------------------------------------------------------------


def test_vpc_is_the_configured_range_with_dns(dev):
    vpc = dev.one("aws:ec2/vpc:Vpc").inputs
    assert vpc["cidrBlock"] == "10.10.0.0/23", f"the VPC is {vpc['cidrBlock']}, not Pulumi.dev.yaml's 10.10.0.0/23"
    assert vpc["enableDnsSupport"] and vpc["enableDnsHostnames"], "the VPC must have DNS support and hostnames on"


def test_one_public_subnet_in_a_zone_that_offers_the_type(dev):
    (offerings,) = dev.invoked("aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings")
    assert offerings.args["locationType"] == "availability-zone"
    assert offerings.args["filters"] == [{"name": "instance-type", "values": ["g4dn.xlarge"]}]
    subnet = dev.one("aws:ec2/subnet:Subnet").inputs
    assert subnet["availabilityZone"] == "ap-northeast-1a", "the subnet must be in the first (sorted) offered zone"
    assert subnet["mapPublicIpOnLaunch"] is True


def test_default_route_goes_to_the_internet_gateway(dev):
    route = dev.one("aws:ec2/route:Route").inputs
    igw = dev.one("aws:ec2/internetGateway:InternetGateway")
    assert route["destinationCidrBlock"] == "0.0.0.0/0" and route["gatewayId"].startswith("igw-")
    assert igw.inputs["vpcId"].startswith("vpc-")
    assert dev.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation"), "the route table is not associated"


def test_no_nat_gateway(all_ok):
    for run in all_ok:
        nat = run.of_type("aws:ec2/natGateway:NatGateway") + run.of_type("aws:ec2/eip:Eip")
        assert not nat, f"a NAT gateway or Elastic IP is created ({[r.name for r in nat]}); the design has none"


def test_type_not_offered_in_the_region_is_a_clear_error():
    run = run_program(
        invokes={"aws:ec2/getInstanceTypeOfferings:getInstanceTypeOfferings": {"locations": [], "instanceTypes": []}}
    )
    assert isinstance(run.error, pulumi.RunError), f"expected a RunError, got {run.error!r}"
    assert "g4dn.xlarge is not offered" in str(run.error) and "gpulab:instanceType" in str(run.error)
    assert not run.resources, "nothing may be created when the type is not offered"


# ---- access ---------------------------------------------------------------------------------------


def test_no_ingress_from_the_whole_internet(dev, ssh):
    for run in (dev, ssh):
        open_to_world = [r for r in ingress_rules(run) if ipaddress.ip_network(r[3]).prefixlen == 0]
        assert not open_to_world, f"inbound rules open to the internet: {open_to_world}"


def test_no_inbound_rule_unless_ssh_is_configured(dev):
    assert ingress_rules(dev) == [], f"the dev stack sets no sshAllowedCidrs but has inbound rules {ingress_rules(dev)}"


def test_ssh_only_on_port_22_from_exactly_the_configured_cidrs(ssh):
    rules = ingress_rules(ssh)
    assert sorted(r[3] for r in rules) == sorted(SSH_CIDRS), f"SSH sources {rules} differ from {SSH_CIDRS}"
    assert all(r[:3] == (22, 22, "tcp") for r in rules), f"an inbound rule is not TCP 22 only: {rules}"
    v6 = [r for r in ssh.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule") if "cidrIpv6" in r.inputs]
    assert [r.inputs["cidrIpv6"] for r in v6] == ["2001:db8:1234::/64"], "the IPv6 CIDR must go in cidrIpv6"


def test_jupyter_port_is_never_open(dev, ssh):
    for run in (dev, ssh):
        for low, high, protocol, cidr in ingress_rules(run):
            for port in JUPYTER_PORTS:
                covered = protocol == "-1" or (low is not None and low <= port <= high)
                assert not covered, f"inbound rule {low}-{high}/{protocol} from {cidr} opens Jupyter's port {port}"


def test_key_pair_only_when_ssh_is_enabled(dev, ssh):
    assert not dev.one(INSTANCE).inputs.get("keyName"), "the dev stack (no SSH) must not attach a key pair"
    assert ssh.one(INSTANCE).inputs["keyName"] == "laptop"


def test_no_wildcard_iam(all_ok):
    for run in all_ok:
        for where, doc in policy_documents(run):
            for statement in as_list(doc["Statement"]):
                if statement["Effect"] != "Allow":
                    continue
                actions = as_list(statement.get("Action", []))
                resources = as_list(statement.get("Resource", []))
                assert not ({"*", "*:*"} & set(actions) and "*" in resources), (
                    f"{where} allows Action * on Resource *: {statement}"
                )


def test_instance_role_reads_code_and_reads_writes_runs_only(dev):
    bucket_arn = dev.one("aws:s3/bucket:Bucket").state["arn"]
    (doc,) = [d for w, d in policy_documents(dev) if w.startswith("aws:iam/rolePolicy")]
    allowed: dict[str, set[str]] = {}
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow"
        for resource in as_list(statement["Resource"]):
            allowed.setdefault(resource, set()).update(as_list(statement["Action"]))
        if "s3:ListBucket" in as_list(statement["Action"]):
            prefixes = as_list(statement["Condition"]["StringLike"]["s3:prefix"])
            assert set(prefixes) <= {"code/*", "runs/*"}, f"ListBucket is not limited to code/ and runs/: {prefixes}"
    params = {p.inputs["name"]: p.state["arn"] for p in dev.of_type(PARAMETER)}
    expected = {
        f"{bucket_arn}/code/*": {"s3:GetObject"},
        f"{bucket_arn}/runs/*": {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"},
        bucket_arn: {"s3:ListBucket"},
        params["/gpulab/dev/jupyter-token"]: {"ssm:GetParameter"},
        params["/gpulab/dev/code"]: {"ssm:GetParameter"},
    }
    assert allowed == expected, f"the instance role allows {allowed}, expected exactly {expected}"


def test_instance_role_has_session_manager_and_nothing_else_managed(dev):
    attached = [a.inputs["policyArn"] for a in dev.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")]
    assert attached == ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"], f"managed policies: {attached}"
    trust = json.loads(dev.one("aws:iam/role:Role").inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}


def test_token_parameter_is_a_secret_secure_string(dev):
    (token,) = [p for p in dev.of_type(PARAMETER) if p.inputs["name"] == "/gpulab/dev/jupyter-token"]
    assert token.inputs["type"] == "SecureString", "the Jupyter token must be stored as an SSM SecureString"
    assert token.inputs["value"] == TEST_TOKEN
    assert "value" in token.secret_inputs, "the token parameter's value must be a Pulumi secret in state"


# ---- instance -------------------------------------------------------------------------------------


def test_imdsv2_is_required(all_ok):
    for run in all_ok:
        meta = run.one(INSTANCE).inputs.get("metadataOptions") or {}
        assert meta.get("httpTokens") == "required", f"IMDSv1 is allowed (httpTokens={meta.get('httpTokens')!r})"
        assert meta.get("httpPutResponseHopLimit") == 1, "the IMDS hop limit must be 1 (no containers using the role)"
        assert meta.get("httpEndpoint") == "enabled", "the metadata endpoint must stay on (SSM and the role need it)"


def test_root_volume_is_encrypted_gp3_of_the_configured_size(dev, ssh):
    for run, size in ((dev, 100), (ssh, 150)):
        root = run.one(INSTANCE).inputs["rootBlockDevice"]
        assert root.get("encrypted") is True, "the root volume is not encrypted"
        assert root.get("volumeType") == "gp3", f"the root volume is {root.get('volumeType')}, not gp3"
        assert root.get("volumeSize") == size, f"the root volume is {root.get('volumeSize')} GiB, configured {size}"


def test_instance_is_wired_and_stops_on_shutdown(dev):
    box = dev.one(INSTANCE)
    assert box.name == "gpu-box" and box.inputs["instanceType"] == "g4dn.xlarge"
    assert box.inputs["instanceInitiatedShutdownBehavior"] == "stop", "shutdown from inside must stop, not terminate"
    assert box.inputs["userDataReplaceOnChange"] is False, "a user_data change must not replace the box"
    assert box.inputs["subnetId"].startswith("subnet-")
    assert box.inputs["iamInstanceProfile"] == dev.one("aws:iam/instanceProfile:InstanceProfile").state["name"]
    assert box.inputs["vpcSecurityGroupIds"] == [dev.one("aws:ec2/securityGroup:SecurityGroup").id]


def test_ami_comes_from_the_map_when_pinned(pinned):
    assert pinned.one(INSTANCE).inputs["ami"] == PINNED_AMI, "the pinned gpulab:amis entry was not used"
    assert not pinned.invoked("aws:ec2/getAmi:getAmi"), "a pinned AMI must not be looked up"
    assert pinned.outputs["amiId"] == PINNED_AMI
    assert "ami" not in pinned.one(INSTANCE).ignore_changes, "changing a pinned AMI must apply"


def test_ami_comes_from_the_lookup_for_an_unmapped_region(unmapped, dev):
    assert unmapped.one(INSTANCE).inputs["ami"] == OTHER_REGION_AMI
    assert dev.one(INSTANCE).inputs["ami"] == LOOKUP_AMI_ID
    (lookup,) = unmapped.invoked("aws:ec2/getAmi:getAmi")
    assert lookup.args["owners"] == ["amazon"] and lookup.args["mostRecent"] is True
    filters = {f["name"]: f["values"] for f in lookup.args["filters"]}
    assert filters["name"] == [StackConfig.model_fields["ami_name_pattern"].default]
    assert filters["architecture"] == ["x86_64"]
    assert "ami" in unmapped.one(INSTANCE).ignore_changes, "a newer looked-up AMI must not replace a running box"


def test_default_ami_pattern_matches_current_deep_learning_ami_names():
    pattern = StackConfig.model_fields["ami_name_pattern"].default
    assert fnmatch.fnmatchcase(LOOKUP_AMI_NAME, pattern), f"{pattern!r} misses {LOOKUP_AMI_NAME!r}"
    arm = "Deep Learning ARM64 AMI OSS Nvidia Driver GPU PyTorch 2.9 (Ubuntu 24.04) 20260317"
    assert not fnmatch.fnmatchcase(arm, pattern), "the pattern must not match the Arm64 AMI"


def test_ami_lookup_finding_nothing_is_a_clear_error():
    no_results = Exception(
        "invoking aws:ec2/getAmi:getAmi: 1 error occurred:\n\t* Your query returned no results. "
        "Please change your search criteria and try again."
    )
    run = run_program(
        {"gpulab:amiNamePattern": "Deep Learning Nothing *"}, invokes={"aws:ec2/getAmi:getAmi": no_results}
    )
    assert isinstance(run.error, pulumi.RunError), f"expected a RunError, got {run.error!r}"
    text = str(run.error)
    for words in ("'Deep Learning Nothing *'", "ap-northeast-1", "gpulab:amis", "gpulab:amiNamePattern"):
        assert words in text, f"the error does not name {words}: {text}"
    assert not run.resources, "nothing may be created when there is no AMI"


def test_spot_uses_a_persistent_request_that_stops(spot, dev):
    market = spot.one(INSTANCE).inputs.get("instanceMarketOptions")
    assert market == {
        "marketType": "spot",
        "spotOptions": {"instanceInterruptionBehavior": "stop", "spotInstanceType": "persistent"},
    }, f"spot settings are {market}"
    assert not dev.one(INSTANCE).inputs.get("instanceMarketOptions"), "on-demand must not set market options"


def test_user_data_names_the_code_parameter_not_the_archive_key(dev):
    text = user_data(dev)
    key = dev.one("aws:s3/bucketObjectv2:BucketObjectv2").inputs["key"]
    assert "/gpulab/dev/code" in text, "user_data must name the code parameter"
    assert key not in text, "user_data must not contain the archive key (a code change would touch user_data)"


# ---- quota ----------------------------------------------------------------------------------------


def test_quota_too_low_is_a_clear_error_and_creates_nothing():
    run = run_program(invokes={"aws:servicequotas/getServiceQuota:getServiceQuota": quota_answer(0.0)})
    assert isinstance(run.error, pulumi.RunError), f"expected a RunError, got {run.error!r}"
    text = str(run.error)
    for words in (
        "Running On-Demand G and VT instances",
        "L-DB2E81BA",
        "4 vCPUs",
        "https://console.aws.amazon.com/servicequotas/home/services/ec2/quotas/L-DB2E81BA",
    ):
        assert words in text, f"the quota error does not say {words!r}: {text}"
    assert not run.of_type(INSTANCE), "an instance was created despite the missing quota"
    assert not run.resources, f"resources were created despite the missing quota: {[r.name for r in run.resources]}"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [({}, "L-DB2E81BA"), ({"gpulab:spot": True}, "L-3819A6DF"), ({"gpulab:instanceType": "p3.2xlarge"}, "L-417A185B")],
    ids=["g-on-demand", "g-spot", "p-on-demand"],
)
def test_the_quota_checked_covers_the_family_and_market(overrides, code, dev, spot):
    run = {(): dev, ("gpulab:spot",): spot}.get(tuple(overrides)) or ok(run_program(overrides))
    asked = [i.args["quotaCode"] for i in run.invoked("aws:servicequotas/getServiceQuota:getServiceQuota")]
    assert asked == [code], f"{overrides or 'dev'} checked quota {asked}, expected {code}"


def test_quota_exactly_enough_passes():
    run = run_program(invokes={"aws:servicequotas/getServiceQuota:getServiceQuota": quota_answer(4.0)})
    assert run.error is None and run.of_type(INSTANCE), f"4 vCPUs of quota must fit one g4dn.xlarge: {run.error}"


# ---- storage --------------------------------------------------------------------------------------


def test_bucket_blocks_all_public_access(dev):
    block = dev.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    for key in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        assert block.get(key) is True, f"public access block {key} is not on"


def test_bucket_is_versioned(dev):
    versioning = dev.one("aws:s3/bucketVersioning:BucketVersioning").inputs["versioningConfiguration"]
    assert versioning["status"] == "Enabled", f"bucket versioning is {versioning}"


def test_bucket_is_encrypted_at_rest(dev):
    sse = dev.one("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    algorithm = sse.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"]
    assert algorithm in ("AES256", "aws:kms"), f"default encryption is {algorithm}"


def test_bucket_policy_denies_plain_http(dev):
    bucket_arn = dev.one("aws:s3/bucket:Bucket").state["arn"]
    doc = json.loads(dev.one("aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    denies = [
        s
        for s in doc["Statement"]
        if s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert denies, "no statement denies requests without TLS"
    assert set(as_list(denies[0]["Resource"])) == {bucket_arn, f"{bucket_arn}/*"}


def test_bucket_owner_enforced(dev):
    rule = dev.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs["rule"]
    assert rule["objectOwnership"] == "BucketOwnerEnforced", "ACLs must be disabled (BucketOwnerEnforced)"


def test_bucket_is_kept_on_destroy(dev):
    bucket = dev.one("aws:s3/bucket:Bucket")
    assert bucket.retain_on_delete, "the artifacts bucket must survive `pulumi destroy` (retain_on_delete)"
    assert not bucket.inputs.get("forceDestroy"), "force_destroy would let a delete empty the bucket"


def test_the_box_starts_only_after_what_its_first_boot_reads(dev):
    waits_for = dev.one(INSTANCE).dependencies
    for token in (
        "aws:ssm/parameter:Parameter",  # the token and the code parameters
        "aws:s3/bucketObjectv2:BucketObjectv2",
        "aws:iam/rolePolicy:RolePolicy",
    ):
        for resource in dev.of_type(token):
            assert resource.urn in waits_for, f"the instance may boot before {token} {resource.name} exists"


def test_the_kept_bucket_keeps_its_protections_after_destroy(dev):
    for token in (
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketVersioning:BucketVersioning",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    ):
        assert dev.one(token).retain_on_delete, (
            f"{token} is deleted on destroy while its bucket is kept: the kept bucket would lose that protection"
        )


def test_code_archive_is_uploaded_at_its_content_key(dev, tmp_path):
    expected = build_code_archive(tmp_path)
    obj = dev.one("aws:s3/bucketObjectv2:BucketObjectv2")
    assert obj.inputs["key"] == expected.key, "the archive key must carry the code's hash"
    (code,) = [p for p in dev.of_type(PARAMETER) if p.inputs["name"] == "/gpulab/dev/code"]
    assert code.inputs["type"] == "String" and code.inputs["insecureValue"] == expected.key


# ---- outputs --------------------------------------------------------------------------------------


def test_every_output_is_present_and_correct(dev):
    bucket = dev.one("aws:s3/bucket:Bucket").state["bucket"]
    region = "ap-northeast-1"
    expected = {
        "region": region,
        "instanceId": INSTANCE_ID,
        "publicIp": PUBLIC_IP,
        "publicDns": f"ec2-203-0-113-10.{region}.compute.amazonaws.com",
        "amiId": LOOKUP_AMI_ID,
        "artifactsBucket": bucket,
        "ssmPortForwardCommand": f"aws ssm start-session --target {INSTANCE_ID} --document-name "
        f"AWS-StartPortForwardingSession --parameters portNumber=8888,localPortNumber=8931 --region {region}",
        "jupyterUrl": f"http://localhost:8931/lab?token={TEST_TOKEN}",
        "syncResultsCommand": f"aws s3 sync s3://{bucket}/runs ./runs",
        "refreshCodeCommand": f"aws ssm send-command --instance-ids {INSTANCE_ID} --document-name AWS-RunShellScript "
        f"--parameters 'commands=[\"sudo /opt/gpulab/bin/refresh\"]' --region {region}",
        "hourlyCostUsd": 0.71,
        "forgottenDayCostUsd": 17.04,
        "costSource": "AWS Price List API (ap-northeast-1, Linux, on-demand)",
    }
    for key, value in expected.items():
        assert key in dev.outputs, f"output {key} is missing"
        assert dev.outputs[key] == value, f"output {key} is {dev.outputs[key]!r}, expected {value!r}"
    assert "sshCommand" not in dev.outputs, "sshCommand must only be exported when SSH is enabled"
    assert "spotHourlyCostUsd" not in dev.outputs, "the spot price is only shown for spot stacks"


def test_ssh_command_uses_the_key_and_the_ami_login_user(ssh):
    assert ssh.outputs["sshCommand"] == f"ssh -i ~/.ssh/laptop.pem -L localhost:8931:localhost:8888 ubuntu@{PUBLIC_IP}"


def test_spot_stack_shows_the_spot_price(spot):
    assert spot.outputs["spotHourlyCostUsd"] == 0.213
    assert spot.outputs["hourlyCostUsd"] == 0.71, "the on-demand price must still be shown for comparison"


def test_price_comes_from_the_us_east_1_pricing_provider(dev):
    (query,) = dev.invoked("aws:pricing/getProduct:getProduct")
    provider = dev.one("pulumi:providers:aws")
    assert query.provider.startswith(provider.urn), "the Price List API call must use the explicit provider"
    assert provider.inputs["region"] == "us-east-1", "the Price List API is served from us-east-1"
    fields = {f["field"]: f["value"] for f in query.args["filters"]}
    assert fields["instanceType"] == "g4dn.xlarge" and fields["regionCode"] == "ap-northeast-1"


def test_failing_price_api_falls_back_to_the_documented_table():
    run = ok(run_program(invokes={"aws:pricing/getProduct:getProduct": Exception("AccessDenied: pricing:GetProducts")}))
    assert run.outputs["hourlyCostUsd"] == 0.71 and run.outputs["forgottenDayCostUsd"] == 17.04
    assert run.outputs["costSource"].startswith("table: AWS EC2 On-Demand pricing page"), run.outputs["costSource"]


def test_jupyter_url_is_a_secret_output(all_ok):
    for run in all_ok:
        assert "jupyterUrl" in run.secret_outputs, "jupyterUrl holds the token and must be a secret output"


def test_token_is_absent_from_user_data(all_ok):
    for run in all_ok:
        assert TEST_TOKEN not in user_data(run), (
            "the Jupyter token is in user_data (readable by anyone with ec2:Describe)"
        )


def test_token_is_absent_from_every_plain_output(all_ok):
    for run in all_ok:
        for name, value in run.outputs.items():
            if name not in run.secret_outputs:
                assert TEST_TOKEN not in json.dumps(value), f"plain output {name} contains the Jupyter token"


# ---- structure ------------------------------------------------------------------------------------


def test_tags_on_everything_taggable(all_ok):
    want = {"project": "gpulab", "stack": "dev"}
    for run in all_ok:
        taggable = [r for r in run.resources if r.custom and r.type.startswith("aws:")]
        taggable = [r for r in taggable if hasattr(pulumi_aws_class(r.type), "tags")]
        assert len(taggable) >= 10, "the check found too few taggable resources to mean anything"
        for resource in taggable:
            tags = resource.inputs.get("tags") or {}
            missing = {k for k, v in want.items() if tags.get(k) != v} | ({"Name"} - set(tags))
            assert not missing, f"{resource.type} {resource.name} lacks tags {missing}"
        root_tags = run.one(INSTANCE).inputs["rootBlockDevice"].get("tags") or {}
        assert root_tags.get("project") == "gpulab", "the root volume is not tagged"


def test_every_resource_belongs_to_a_gpulab_component(dev):
    components = {r.urn: r for r in dev.resources if not r.custom}
    assert {c.type for c in components.values()} >= {
        "gpulab:infra:Network",
        "gpulab:infra:Access",
        "gpulab:infra:Storage",
        "gpulab:infra:GpuBox",
    }
    for resource in dev.resources:
        if resource.custom:
            parent = components.get(resource.parent)
            assert parent and parent.type.startswith("gpulab:infra:"), (
                f"{resource.type} {resource.name} has no component parent"
            )


def test_a_bad_config_raises_before_anything_is_registered_or_looked_up():
    run = run_program({"gpulab:instanceType": "t3.micro"})
    assert isinstance(run.error, pulumi.RunError), f"expected a RunError, got {run.error!r}"
    assert "gpulab:instanceType" in str(run.error) and "GPU" in str(run.error)
    assert not run.resources and not run.invokes, "a bad config must stop the program before any AWS call"


def test_a_missing_token_is_refused_before_anything_is_registered():
    run = run_program({"gpulab:jupyterToken": None})
    assert isinstance(run.error, pulumi.RunError) and "gpulab:jupyterToken" in str(run.error)
    assert not run.resources


@pytest.mark.parametrize("stack", ["dev", "My_Stack.v2", "x" * 80, "--"])
def test_bucket_prefix_is_a_valid_s3_name_start_for_any_stack_name(stack):
    prefix = bucket_prefix(stack)
    assert len(prefix) <= 37, f"{prefix!r} is too long: the provider appends 26 characters and S3 allows 63"
    assert re.fullmatch(r"gpulab-[a-z0-9][a-z0-9-]*-", prefix), f"{prefix!r} is not a valid S3 name prefix"


def test_unknown_price_is_reported_as_unknown_not_guessed():
    no_price = Exception("Pricing product query did not return any elements")
    run = ok(run_program({"gpulab:instanceType": "g6.xlarge"}, invokes={"aws:pricing/getProduct:getProduct": no_price}))
    assert run.outputs["hourlyCostUsd"] is None and run.outputs["forgottenDayCostUsd"] is None
    assert run.outputs["costSource"].startswith("unknown"), run.outputs["costSource"]
