"""The artifacts bucket (private, versioned, encrypted, TLS only, kept on destroy) and the code in it.

Layout: `code/gpulab-<sha>.tar.gz` holds the experiment and config packages as the instance installs
them; `runs/` holds what training writes back. The SSM parameter `/gpulab/<stack>/code` names the
current archive, so a code change uploads a new object and moves the parameter, and user_data (which
names only the parameter) stays the same: no instance replacement, no reboot.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from infra.code_archive import CodeArchive
from infra.common import PROJECT, TYPE_PREFIX, code_parameter_name, tags

BUCKET_PREFIX_MAX = 37  # S3 allows 63 characters; the provider appends a 26-character unique suffix


@dataclass(frozen=True)
class StorageArgs:
    stack: str
    archive: CodeArchive


def bucket_prefix(stack: str) -> str:
    """A valid S3 name prefix from the stack name (lowercase letters, digits and dashes)."""
    cleaned = "".join(c if c.isalnum() else "-" for c in stack.lower()).strip("-") or "stack"
    return f"{PROJECT}-{cleaned}"[: BUCKET_PREFIX_MAX - 1].rstrip("-") + "-"


def tls_only_policy(bucket_arn: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [bucket_arn, f"{bucket_arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


class Storage(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    code_parameter_name: str
    code_parameter_arn: pulumi.Output[str]

    def __init__(self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{TYPE_PREFIX}:Storage", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # The bucket outlives `pulumi destroy`, and so must what protects it: deleting these would leave
        # the kept bucket without its public access block, versioning, or TLS-only policy.
        kept = pulumi.ResourceOptions(parent=self, retain_on_delete=True)

        # Kept on `pulumi destroy`: models and metrics outlive the box. `make destroy` says how to delete it.
        bucket = aws.s3.Bucket(
            "artifacts",
            bucket_prefix=bucket_prefix(args.stack),
            force_destroy=False,
            tags=tags(args.stack, "artifacts"),
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        block = aws.s3.BucketPublicAccessBlock(
            "artifacts",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=kept,
        )
        aws.s3.BucketOwnershipControls(
            "artifacts", bucket=bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=kept
        )
        aws.s3.BucketVersioning(
            "artifacts", bucket=bucket.id, versioning_configuration={"status": "Enabled"}, opts=kept
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            "artifacts",
            bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=kept,
        )
        aws.s3.BucketPolicy(
            "artifacts",
            bucket=bucket.id,
            policy=bucket.arn.apply(tls_only_policy),
            # S3 rejects a policy write while the public access block is being changed.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[block], retain_on_delete=True),
        )

        archive = aws.s3.BucketObjectv2(
            "code-archive",
            bucket=bucket.id,
            key=args.archive.key,
            source=pulumi.FileAsset(str(Path(args.archive.path))),
            content_type="application/gzip",
            server_side_encryption="AES256",
            tags=tags(args.stack, "code-archive"),
            opts=child,
        )
        code_parameter = aws.ssm.Parameter(
            "code-parameter",
            name=code_parameter_name(args.stack),
            type="String",
            # Not a secret (insecure_value keeps it readable in state); taken from the uploaded object, so the
            # parameter moves only after the new archive exists.
            insecure_value=archive.key,
            description="S3 key of the gpulab code archive the instance installs (bucket: the artifacts bucket).",
            tags=tags(args.stack, "code-parameter"),
            opts=child,
        )

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.code_key = args.archive.key
        self.code_parameter_name = code_parameter_name(args.stack)
        self.code_parameter_arn = code_parameter.arn
        # What the box reads at its first boot: it must exist before the instance starts.
        self.boot_needs = [archive, code_parameter]
        self.register_outputs(
            {
                "bucketName": bucket.bucket,
                "bucketArn": bucket.arn,
                "codeKey": archive.key,
                "codeParameter": code_parameter.name,
            }
        )
