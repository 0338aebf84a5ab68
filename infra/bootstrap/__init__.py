"""Renders the instance's user_data from the template files beside this module.

PLACEHOLDER until the bootstrap issue lands: the interface below is the contract the instance
component uses; the body only writes a marker.
"""

from dataclasses import dataclass

from config.experiment import ExperimentConfig


@dataclass(frozen=True)
class BootstrapParams:
    region: str
    stack: str
    bucket: str
    # SSM String parameter whose value is the current archive's S3 key (code/gpulab-<sha>.tar.gz).
    # user_data names the parameter, not the key, so a code change never changes user_data and
    # never restarts the instance; the box reads it at boot and on refresh.
    code_parameter: str
    token_parameter: str  # SSM SecureString parameter name holding the Jupyter token
    experiment: ExperimentConfig
    idle_stop_minutes: int
    max_lifetime_hours: int
    spot: bool


def render_user_data(params: BootstrapParams) -> str:
    """The user_data text (cloud-init). Never contains a secret: the token is read from SSM on the box."""
    return (
        "#cloud-config\n"
        "write_files:\n"
        "  - path: /etc/gpulab/placeholder\n"
        f"    content: 'stack {params.stack}, code from {params.code_parameter}'\n"
    )
