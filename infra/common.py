"""Names, tags and ARNs that every gpulab component shares, so they are spelled one way only."""

PROJECT = "gpulab"
TYPE_PREFIX = "gpulab:infra"
JUPYTER_PORT = 8888  # on the box, loopback only; never opened in the security group
LOCAL_PORT = 8931  # the tutorial's local end of the tunnel


def tags(stack: str, name: str) -> dict[str, str]:
    """The tags every taggable resource carries: who made it and which stack it belongs to."""
    return {"Name": f"{PROJECT}-{stack}-{name}", "project": PROJECT, "stack": stack}


def partition(region: str) -> str:
    """The ARN partition of a region: China and GovCloud differ from the commercial one."""
    if region.startswith("cn-"):
        return "aws-cn"
    if "-gov-" in region:
        return "aws-us-gov"
    return "aws"


def token_parameter_name(stack: str) -> str:
    return f"/{PROJECT}/{stack}/jupyter-token"


def code_parameter_name(stack: str) -> str:
    return f"/{PROJECT}/{stack}/code"
