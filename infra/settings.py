"""Read the stack's settings from Pulumi, as `namespace:key` pairs for config.loader.

Pulumi hands the program its config through the runtime (and, in some hosts, the PULUMI_CONFIG
environment variable); we need every key, not just known ones, so misspelt keys can be reported.
"""

from typing import Any

from pulumi.runtime import config as runtime_config


def pulumi_settings() -> dict[str, Any]:
    settings = dict(runtime_config.get_config_env())
    settings.update(runtime_config.CONFIG.get())
    return settings
