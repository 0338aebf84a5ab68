"""The ready-to-paste commands and URLs in the stack outputs, built from plain values."""

from infra.common import JUPYTER_PORT, LOCAL_PORT

REFRESH_SCRIPT = "/opt/gpulab/bin/refresh"  # installed on the box by the bootstrap


def ssm_port_forward_command(instance_id: str, region: str) -> str:
    return (
        f"aws ssm start-session --target {instance_id} --document-name AWS-StartPortForwardingSession "
        f"--parameters portNumber={JUPYTER_PORT},localPortNumber={LOCAL_PORT} --region {region}"
    )


def ssh_command(key_name: str, user: str, host: str) -> str:
    return f"ssh -i ~/.ssh/{key_name}.pem -L localhost:{LOCAL_PORT}:localhost:{JUPYTER_PORT} {user}@{host}"


def jupyter_url(token: str) -> str:
    return f"http://localhost:{LOCAL_PORT}/lab?token={token}"


def sync_results_command(bucket: str) -> str:
    return f"aws s3 sync s3://{bucket}/runs ./runs"


def refresh_code_command(instance_id: str, region: str) -> str:
    return (
        f"aws ssm send-command --instance-ids {instance_id} --document-name AWS-RunShellScript "
        f"--parameters 'commands=[\"sudo {REFRESH_SCRIPT}\"]' --region {region}"
    )
