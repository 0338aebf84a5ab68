"""Guardrail policies on the whole program: the real __main__.py on the real Pulumi.dev.yaml, under mocks."""

import pytest
import yaml
from pulumi_harness import INSTANCE_ID, run_program

from infra.bootstrap import decode_user_data

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
BUDGET = "aws:budgets/budget:Budget"
INSTANCE = "aws:ec2/instance:Instance"


def ok(run):
    assert run.error is None, f"the program failed: {run.error}"
    return run


@pytest.fixture(scope="module")
def dev():
    return ok(run_program())


@pytest.fixture(scope="module")
def budgeted():
    budget = {"monthlyLimitUsd": 40, "emails": ["me@example.com", "lab@example.org"]}
    return ok(run_program({"gpulab:budget": budget}))


@pytest.fixture(scope="module")
def unguarded():
    return ok(run_program({"gpulab:idleStopMinutes": 0, "gpulab:maxLifetimeHours": 0}))


def test_idle_alarm_stops_this_instance_in_its_region(dev):
    alarm = dev.one(ALARM).inputs
    assert alarm["alarmActions"] == ["arn:aws:automate:ap-northeast-1:ec2:stop"], "the alarm must stop the box"
    assert alarm["dimensions"] == {"InstanceId": INSTANCE_ID}, "the alarm must watch the gpu-box instance"
    assert alarm["metricName"] == "CPUUtilization" and alarm["comparisonOperator"] == "LessThanThreshold"
    window = alarm["period"] * alarm["evaluationPeriods"] / 60
    assert window > 30, f"the backstop ({window} min) must wait longer than the watcher (30 min)"


def test_the_instance_stops_rather_than_terminates_on_shutdown(dev):
    assert dev.one(INSTANCE).inputs["instanceInitiatedShutdownBehavior"] == "stop", (
        "the watcher's shutdown must stop the instance, keeping its disk"
    )


def test_no_budget_unless_configured_and_the_outputs_say_so(dev):
    assert not dev.of_type(BUDGET), "a budget was created without gpulab:budget"
    assert dev.outputs["budget"].startswith("none"), dev.outputs["budget"]


def test_budget_alerts_at_80_forecast_and_100_actual(budgeted):
    budget = budgeted.one(BUDGET).inputs
    assert (budget["budgetType"], budget["timeUnit"], budget["limitAmount"], budget["limitUnit"]) == (
        "COST",
        "MONTHLY",
        "40.00",
        "USD",
    )
    alerts = {(n["notificationType"], n["threshold"]) for n in budget["notifications"]}
    assert alerts == {("FORECASTED", 80), ("ACTUAL", 100)}, alerts
    for notification in budget["notifications"]:
        assert notification["subscriberEmailAddresses"] == ["me@example.com", "lab@example.org"]


def test_disabled_idle_stop_has_no_alarm_and_says_so(unguarded):
    assert not unguarded.of_type(ALARM), "gpulab:idleStopMinutes: 0 must not create the idle alarm"
    assert unguarded.outputs["idleStop"].startswith("disabled"), unguarded.outputs["idleStop"]
    assert unguarded.outputs["maxLifetime"].startswith("disabled"), unguarded.outputs["maxLifetime"]


def test_outputs_describe_the_guardrails_in_words(dev):
    assert "30 idle minutes" in dev.outputs["idleStop"]
    assert "12 h after each start" in dev.outputs["maxLifetime"]


def shipped_files(run) -> dict[str, str]:
    """path -> content of every file the instance's user_data writes."""
    cloud_config = yaml.safe_load(decode_user_data(run.one(INSTANCE).inputs["userDataBase64"]))
    return {entry["path"]: entry["content"] for entry in cloud_config["write_files"]}


def test_user_data_carries_the_max_lifetime_timer_for_each_boot(dev):
    files = shipped_files(dev)
    timer = files.get("/etc/systemd/system/gpulab-lifetime.timer", "")
    assert "OnBootSec=710min" in timer, f"12 h lifetime must warn at boot + 11 h 50 min:\n{timer}"
    service = files.get("/etc/systemd/system/gpulab-lifetime.service", "")
    assert "shutdown -h +10" in service, f"the lifetime service must stop 10 minutes after its wall message:\n{service}"


def test_user_data_carries_the_idle_watcher_with_the_configured_window(dev):
    files = shipped_files(dev)
    assert "/usr/local/lib/gpulab/idle_watch.py" in files, "the idle watcher is not shipped"
    assert "--window-minutes 30" in files["/etc/systemd/system/gpulab-idle.service"]


def test_disabled_guardrails_ship_no_watcher_and_no_lifetime_timer(unguarded):
    files = shipped_files(unguarded)
    shipped = sorted(p for p in files if "idle" in p or "lifetime" in p)
    assert not shipped, f"guardrails set to 0 must not be shipped: {shipped}"
