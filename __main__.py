"""The gpulab Pulumi program: parse the stack config once, build the components, export outputs."""

import pulumi

from config.loader import ConfigError, parse_settings
from infra.settings import pulumi_settings

try:
    stack = parse_settings(
        pulumi_settings(), source=f"stack {pulumi.get_stack()!r} (Pulumi.{pulumi.get_stack()}.yaml)", require_token=True
    )
except ConfigError as err:
    # Raised before any resource is registered: nothing is created.
    raise pulumi.RunError(str(err)) from None

pulumi.export("region", stack.region)
