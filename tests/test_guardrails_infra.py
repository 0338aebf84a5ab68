"""Policies for the AWS guardrails (CloudWatch stop alarm, AWS Budget) under Pulumi mocks."""

import pulumi
import pytest

from config.stack import Budget
from infra.guardrails import Guardrails, GuardrailsArgs, alarm_window_minutes

INSTANCE = "i-0123456789abcdef0"


class Mocks(pulumi.runtime.Mocks):
    """Answers like the AWS provider: camelCase state, with the computed fields the component reads."""

    def __init__(self):
        self.resources: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args):
        self.resources.append(args)
        state = dict(args.inputs)
        if args.typ == "aws:cloudwatch/metricAlarm:MetricAlarm":
            state["arn"] = f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{state.get('name', args.name)}"
        if args.typ == "aws:budgets/budget:Budget":
            state["arn"] = f"arn:aws:budgets::123456789012:budget/{state.get('name', args.name)}"
        return f"{args.name}-id", state

    def call(self, args):
        return {}

    def of(self, typ: str) -> list[dict]:
        return [r.inputs for r in self.resources if r.typ == typ]


ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
BUDGET = "aws:budgets/budget:Budget"


def deploy(region="eu-west-1", idle=30, lifetime=12, budget=None) -> tuple[Mocks, dict, list[str]]:
    mocks = Mocks()
    pulumi.runtime.set_mocks(mocks, project="gpulab", stack="test", preview=False)
    made = {}

    @pulumi.runtime.test
    def program():
        args = GuardrailsArgs(
            instance_id=pulumi.Output.from_input(INSTANCE),
            region=region,
            stack="test",
            idle_stop_minutes=idle,
            max_lifetime_hours=lifetime,
            budget=budget,
            tags={"project": "gpulab", "stack": "test"},
        )
        g = made["guardrails"] = Guardrails("guardrails", args)
        children = [c for c in (g.idle_alarm, g.budget) if c is not None]
        return pulumi.Output.all(*[c.urn for c in children]).apply(lambda urns: made.update(urns=urns))

    program()
    assert mocks.resources[0].typ == "gpulab:infra:Guardrails"
    return mocks, made["guardrails"].summary, made["urns"]


def test_alarm_stops_the_instance_with_the_regions_automate_action():
    mocks, _, _ = deploy(region="ap-northeast-1")
    (alarm,) = mocks.of(ALARM)
    assert alarm["alarmActions"] == ["arn:aws:automate:ap-northeast-1:ec2:stop"]
    assert alarm["dimensions"] == {"InstanceId": INSTANCE}
    assert (alarm["namespace"], alarm["metricName"], alarm["statistic"]) == ("AWS/EC2", "CPUUtilization", "Average")
    assert alarm["comparisonOperator"] == "LessThanThreshold" and alarm["threshold"] <= 5
    assert alarm["treatMissingData"] == "notBreaching", "a stopped instance (no data) must not count as idle"
    assert alarm["tags"] == {"project": "gpulab", "stack": "test"}


@pytest.mark.parametrize(("idle", "minutes"), [(30, 60), (45, 90), (5, 60), (1440, 1440), (33, 70)])
def test_alarm_window_is_longer_than_the_watchers(idle, minutes):
    assert alarm_window_minutes(idle) == minutes
    mocks, summary, _ = deploy(idle=idle)
    (alarm,) = mocks.of(ALARM)
    assert alarm["period"] * alarm["evaluationPeriods"] == minutes * 60
    assert alarm["datapointsToAlarm"] == alarm["evaluationPeriods"], "every datapoint in the window must be low"
    assert minutes >= min(idle, 1440) and alarm["period"] * alarm["evaluationPeriods"] <= 86_400
    assert f"after {minutes} min below" in summary["idleStop"]


def test_no_alarm_when_idle_stop_is_disabled():
    mocks, summary, _ = deploy(idle=0)
    assert mocks.of(ALARM) == [], "gpulab:idleStopMinutes: 0 must create no stop alarm"
    assert summary["idleStop"].startswith("disabled (gpulab:idleStopMinutes: 0)")


def test_budget_emails_at_80_percent_forecast_and_100_percent_actual():
    mocks, summary, _ = deploy(budget=Budget(monthly_limit_usd=50, emails=["me@example.com", "lab@example.org"]))
    (budget,) = mocks.of(BUDGET)
    assert (budget["budgetType"], budget["timeUnit"]) == ("COST", "MONTHLY")
    assert (budget["limitAmount"], budget["limitUnit"]) == ("50.00", "USD")
    got = sorted(
        (n["notificationType"], n["threshold"], n["thresholdType"], n["comparisonOperator"])
        for n in budget["notifications"]
    )
    assert got == [("ACTUAL", 100, "PERCENTAGE", "GREATER_THAN"), ("FORECASTED", 80, "PERCENTAGE", "GREATER_THAN")]
    for n in budget["notifications"]:
        assert n["subscriberEmailAddresses"] == ["me@example.com", "lab@example.org"]
    assert "USD 50.00/month" in summary["budget"] and "me@example.com" in summary["budget"]


def test_no_budget_when_unset_and_the_summary_says_how_to_get_one():
    mocks, summary, _ = deploy(budget=None)
    assert mocks.of(BUDGET) == []
    assert summary["budget"].startswith("none: set gpulab:budget")


def test_max_lifetime_is_reported_and_disabled_by_zero():
    _, on, _ = deploy(lifetime=12)
    assert on["maxLifetime"].startswith("stops 12 h after each start")
    _, off, _ = deploy(lifetime=0)
    assert off["maxLifetime"] == "disabled (gpulab:maxLifetimeHours: 0)"


def test_every_child_is_parented_to_the_component():
    _, _, urns = deploy(budget=Budget(monthly_limit_usd=10, emails=["me@example.com"]))
    assert len(urns) == 2
    for urn in urns:
        assert "::gpulab:infra:Guardrails$aws:" in urn, f"{urn} is not a child of the Guardrails component"
