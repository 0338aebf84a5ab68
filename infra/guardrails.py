"""Cost guardrails in AWS: a CloudWatch alarm that stops a forgotten instance, and an AWS Budget.

The on-instance watcher (infra/guardrails_files.py) is the first line: it knows about Jupyter, SSH
and the GPU. The alarm is the backstop for when the watcher itself is dead: CPU below a few percent
for a longer window stops the instance through EC2's built-in alarm action. The budget emails at
80% of the monthly limit forecast and at 100% actually spent. The summary outputs say in plain
words what is on and what is off.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from config.stack import Budget

ALARM_PERIOD_S = 300  # basic monitoring: one CPUUtilization datapoint per 5 minutes, at no cost
ALARM_CPU_PERCENT = 2.0  # a box doing nothing sits well below; any training keeps a core busy
ALARM_MIN_MINUTES = 60
ALARM_MAX_MINUTES = 1440  # CloudWatch: evaluation periods x period may not exceed one day


@dataclass(frozen=True)
class GuardrailsArgs:
    instance_id: pulumi.Input[str]
    region: str
    stack: str
    idle_stop_minutes: int
    max_lifetime_hours: int
    budget: Budget | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


def alarm_window_minutes(idle_stop_minutes: int) -> int:
    """Twice the watcher's window, at least an hour, whole 5-minute periods, at most a day."""
    wanted = max(ALARM_MIN_MINUTES, 2 * idle_stop_minutes)
    return min(ALARM_MAX_MINUTES, -(-wanted // 5) * 5)


def stop_action_arn(region: str) -> str:
    return f"arn:aws:automate:{region}:ec2:stop"


class Guardrails(pulumi.ComponentResource):
    """The idle-CPU stop alarm (when idle stop is on) and the monthly budget (when configured)."""

    def __init__(self, name: str, args: GuardrailsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("gpulab:infra:Guardrails", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = dict(args.tags)
        self.idle_alarm: aws.cloudwatch.MetricAlarm | None = None
        self.budget: aws.budgets.Budget | None = None

        if args.idle_stop_minutes:
            window = alarm_window_minutes(args.idle_stop_minutes)
            periods = window * 60 // ALARM_PERIOD_S
            self.idle_alarm = aws.cloudwatch.MetricAlarm(
                "idle-cpu",
                name=f"gpulab-{args.stack}-idle-cpu",
                alarm_description=(
                    f"gpulab backstop for the on-instance idle watcher: stops the instance after {window} minutes "
                    f"below {ALARM_CPU_PERCENT:g}% CPU (gpulab:idleStopMinutes={args.idle_stop_minutes})"
                ),
                namespace="AWS/EC2",
                metric_name="CPUUtilization",
                dimensions={"InstanceId": args.instance_id},
                statistic="Average",
                period=ALARM_PERIOD_S,
                evaluation_periods=periods,
                datapoints_to_alarm=periods,
                comparison_operator="LessThanThreshold",
                threshold=ALARM_CPU_PERCENT,
                # A stopped instance sends no data: that is not "idle", and must not re-fire at the next start.
                treat_missing_data="notBreaching",
                alarm_actions=[stop_action_arn(args.region)],
                tags=tags,
                opts=child,
            )
            idle_summary = (
                f"stops after {args.idle_stop_minutes} idle minutes (on-instance watcher); "
                f"CloudWatch alarm stops it after {window} min below {ALARM_CPU_PERCENT:g}% CPU"
            )
        else:
            idle_summary = "disabled (gpulab:idleStopMinutes: 0): the instance runs until you stop it"

        if args.max_lifetime_hours:
            lifetime_summary = (
                f"stops {args.max_lifetime_hours} h after each start, with a wall message 10 minutes before"
            )
        else:
            lifetime_summary = "disabled (gpulab:maxLifetimeHours: 0)"

        if args.budget:
            limit = args.budget.monthly_limit_usd
            emails = list(args.budget.emails)
            self.budget = aws.budgets.Budget(
                "budget",
                name=f"gpulab-{args.stack}-monthly",
                budget_type="COST",
                time_unit="MONTHLY",
                limit_amount=f"{limit:.2f}",
                limit_unit="USD",
                notifications=[
                    aws.budgets.BudgetNotificationArgs(
                        notification_type=kind,
                        comparison_operator="GREATER_THAN",
                        threshold=percent,
                        threshold_type="PERCENTAGE",
                        subscriber_email_addresses=emails,
                    )
                    for kind, percent in (("FORECASTED", 80), ("ACTUAL", 100))
                ],
                tags=tags,
                opts=child,
            )
            budget_summary = (
                f"USD {limit:.2f}/month for the whole account: email to {', '.join(emails)} "
                "at 80% forecast and 100% actual"
            )
        else:
            budget_summary = "none: set gpulab:budget ({monthlyLimitUsd, emails}) to get email alerts"

        self.summary = {"idleStop": idle_summary, "maxLifetime": lifetime_summary, "budget": budget_summary}
        self.register_outputs(
            {
                **self.summary,
                "idleAlarmArn": self.idle_alarm.arn if self.idle_alarm else None,
                "budgetName": self.budget.name if self.budget else None,
            }
        )
