"""`python -m config validate Pulumi.<stack>.yaml`: check a stack file offline (no AWS, no Pulumi CLI).

Exit 0 with a one-screen summary when valid; exit 2 with every problem when not.
"""

import argparse
import sys
from pathlib import Path

from config.loader import ConfigError, load_stack_file
from config.stack import StackConfig


def summary(stack: StackConfig) -> str:
    exp = stack.experiment
    ami = stack.ami_override() or f"latest Deep Learning AMI matching {stack.ami_name_pattern!r}"
    access = (
        f"SSH on port 22 from {', '.join(stack.ssh_allowed_cidrs)} (key {stack.key_name}) + Session Manager"
        if stack.ssh_enabled
        else "Session Manager only (no inbound port)"
    )
    budget = (
        f"${stack.budget.monthly_limit_usd:g}/month, alerts to {', '.join(stack.budget.emails)}"
        if stack.budget
        else "none (set gpulab:budget to get email alerts)"
    )
    idle = f"after {stack.idle_stop_minutes} idle minutes" if stack.idle_stop_minutes else "disabled"
    lifetime = f"{stack.max_lifetime_hours:g} h after each start" if stack.max_lifetime_hours else "disabled"
    token = "set" if stack.jupyter_token else "not set (encrypted in the file, or `make up` generates one)"
    rows = [
        ("region", stack.region),
        ("instance", f"{stack.instance_type}{' (spot)' if stack.spot else ''}"),
        ("AMI", ami),
        ("disk", f"{stack.volume_size_gib} GiB gp3, encrypted"),
        ("network", f"VPC {stack.vpc_cidr}, one public subnet, no NAT"),
        ("access", access),
        ("jupyter token", token),
        ("idle stop", idle),
        ("max lifetime", lifetime),
        ("budget", budget),
        (
            "experiment",
            f"{exp.epochs} epochs, batch {exp.batch_size}, lr {exp.lr}, momentum {exp.momentum}, "
            f"loader {exp.loader}, device {exp.device}, run on boot: {'yes' if exp.run_on_boot else 'no'}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m config",
        description="Validate gpulab stack files offline, before anything reaches AWS.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser(
        "validate", help="check a Pulumi.<stack>.yaml and print a summary, or every problem found"
    )
    validate.add_argument("stack_file", type=Path, help="path to the stack file, e.g. Pulumi.dev.yaml")
    args = parser.parse_args(argv)

    try:
        stack = load_stack_file(args.stack_file)
    except ConfigError as err:
        print(f"✗ {err}", file=sys.stderr)
        return 2
    print(f"✓ {args.stack_file} is valid\n{summary(stack)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
