"""Policies for `make destroy`'s notice and the bucket delete: say what is kept, delete every version.

Stand-in `pulumi` and `aws` executables on PATH play a deployed stack and a versioned bucket; the
stand-in aws evaluates each --query with jmespath, the AWS CLI's own query language, so the
scripts' queries are checked for real.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTICE = ROOT / "scripts" / "destroy-notice.sh"
DELETE = ROOT / "scripts" / "delete-bucket.sh"
BUCKET = "gpulab-dev-artifacts-0a1b2c"

FAKE_AWS = r"""
import json, os, sys
from pathlib import Path
import jmespath

state_file = Path(os.environ["FAKE_AWS_STATE"])
state = json.loads(state_file.read_text())
argv = sys.argv[1:]
with open(os.environ["FAKE_AWS_LOG"], "a") as log:
    log.write(json.dumps(argv) + "\n")
opt = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
if state.get("deny") or opt.get("--bucket") != state["bucket"] or state.get("gone"):
    sys.exit("An error occurred (AccessDenied or NoSuchBucket)")
cmd = argv[:2]
if cmd == ["s3api", "list-object-versions"]:
    limit = int(opt.get("--max-items", 10**9))
    page = {}  # like S3: a key is absent when it has nothing
    if state["versions"]:
        page["Versions"] = state["versions"][:limit]
    if state["markers"]:
        page["DeleteMarkers"] = state["markers"][:limit]
    out = jmespath.search(opt["--query"], page) if "--query" in opt else page
    if opt.get("--output") == "text":
        print("\t".join(str(v) for v in out))
    else:
        print(json.dumps(out))
elif cmd == ["s3api", "delete-objects"]:
    doomed = {(o["Key"], o["VersionId"]) for o in json.loads(opt["--delete"])["Objects"]}
    assert len(doomed) <= 1000, "S3 deletes at most 1000 keys per call"
    for kind in ("versions", "markers"):
        state[kind] = [v for v in state[kind] if (v["Key"], v["VersionId"]) not in doomed]
elif cmd == ["s3api", "delete-bucket"]:
    if state["versions"] or state["markers"]:
        sys.exit("An error occurred (BucketNotEmpty) when calling the DeleteBucket operation")
    state["gone"] = True
else:
    sys.exit(f"stand-in aws: unexpected {argv}")
state_file.write_text(json.dumps(state))
"""

FAKE_PULUMI = """#!/bin/sh
# stands in for `pulumi stack output artifactsBucket --stack S`
if [ "$1 $2 $3" = "stack output artifactsBucket" ] && [ -n "$FAKE_BUCKET" ]; then echo "$FAKE_BUCKET"; exit 0; fi
echo "error: no output" >&2; exit 1
"""


class Cloud:
    def __init__(self, root: Path, versions: int, markers: int, sizes: int = 1024):
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        (self.bin / "aws").write_text(f"#!{sys.executable}\n{FAKE_AWS}")
        (self.bin / "pulumi").write_text(FAKE_PULUMI)
        for tool in ("aws", "pulumi"):
            (self.bin / tool).chmod(0o755)
        self.state = root / "aws.json"
        self.log = root / "aws.log"
        self.state.write_text(
            json.dumps(
                {
                    "bucket": BUCKET,
                    "versions": [
                        {"Key": f"runs/r{i % 7}/m.pt", "VersionId": f"v{i}", "Size": sizes} for i in range(versions)
                    ],
                    "markers": [{"Key": f"runs/old{i}.json", "VersionId": f"d{i}"} for i in range(markers)],
                }
            )
        )

    def run(self, script: Path, *args: str, stdin: str = "", bucket_output: str = BUCKET):
        env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "FAKE_AWS_STATE": str(self.state),
            "FAKE_AWS_LOG": str(self.log),
            "FAKE_BUCKET": bucket_output,
            "HOME": str(self.root),
        }
        return subprocess.run(
            ["bash", str(script), *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
        )

    @property
    def data(self) -> dict:
        return json.loads(self.state.read_text())


@pytest.mark.parametrize("script", [NOTICE, DELETE, ROOT / "scripts" / "stack.sh"], ids=lambda p: p.name)
def test_shell_scripts_pass_shellcheck(script):
    out = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout


def test_notice_names_the_kept_bucket_its_size_and_the_delete_command(tmp_path):
    cloud = Cloud(tmp_path, versions=3, markers=1, sizes=1024 * 1024)
    out = cloud.run(NOTICE, "dev")
    assert out.returncode == 0, out.stderr
    assert f"kept on purpose: the artifacts bucket s3://{BUCKET}" in out.stdout
    assert "3.0MiB in 3 object versions, 1 delete markers" in out.stdout, out.stdout
    assert f"bash scripts/delete-bucket.sh {BUCKET}" in out.stdout
    assert f"aws s3 sync s3://{BUCKET}/runs ./runs" in out.stdout


def test_notice_counts_old_versions_not_only_current_objects(tmp_path):
    cloud = Cloud(tmp_path, versions=0, markers=0)
    out = cloud.run(NOTICE, "dev")
    assert "0B in 0 object versions, 0 delete markers" in out.stdout, out.stdout
    calls = [json.loads(line) for line in cloud.log.read_text().splitlines()]
    assert calls[0][:2] == ["s3api", "list-object-versions"], "size must come from every version"


def test_notice_uses_the_bucket_read_before_destroy(tmp_path):
    cloud = Cloud(tmp_path, versions=1, markers=0)
    out = cloud.run(NOTICE, "dev", BUCKET, bucket_output="")  # the destroyed stack has no outputs
    assert f"s3://{BUCKET}" in out.stdout, out.stdout


def test_notice_without_a_bucket_says_nothing_is_kept(tmp_path):
    cloud = Cloud(tmp_path, versions=0, markers=0)
    out = cloud.run(NOTICE, "dev", bucket_output="")
    assert out.returncode == 0 and "nothing of it is kept" in out.stdout, out.stdout + out.stderr


def test_notice_still_helps_when_listing_fails(tmp_path):
    cloud = Cloud(tmp_path, versions=2, markers=0)
    cloud.state.write_text(json.dumps({**cloud.data, "deny": True}))
    out = cloud.run(NOTICE, "dev")
    assert out.returncode == 0 and "size unknown" in out.stdout
    assert f"bash scripts/delete-bucket.sh {BUCKET}" in out.stdout


def test_delete_removes_every_version_and_marker_then_the_bucket(tmp_path):
    cloud = Cloud(tmp_path, versions=2345, markers=1200)  # more than one 1000-key batch of each
    out = cloud.run(DELETE, BUCKET, stdin=BUCKET + "\n")
    assert out.returncode == 0, out.stderr
    assert cloud.data["gone"] and not cloud.data["versions"] and not cloud.data["markers"]
    assert f"deleted s3://{BUCKET} (3545 object versions and delete markers)" in out.stdout


def test_delete_needs_the_bucket_name_typed(tmp_path):
    cloud = Cloud(tmp_path, versions=3, markers=0)
    out = cloud.run(DELETE, BUCKET, stdin="yes\n")
    assert out.returncode == 1 and "not deleted" in out.stderr
    assert len(cloud.data["versions"]) == 3 and not cloud.data.get("gone")
    assert not cloud.log.exists(), "nothing may be called on AWS before the confirmation"
