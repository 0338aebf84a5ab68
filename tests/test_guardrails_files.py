"""Policies for the guardrail files shipped in user_data: valid units, the right timings, small, off when 0."""

import base64
import configparser
import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.guardrails_files import TEMPLATES, WATCHER, guardrail_files, guardrail_timers

# Keys each unit section may use here; anything else is a typo systemd would silently ignore.
ALLOWED = {
    "Unit": {"Description", "After", "Documentation"},
    "Service": {"Type", "ExecStart"},
    "Timer": {"OnBootSec", "OnUnitActiveSec", "AccuracySec"},
    "Install": {"WantedBy"},
}


def units(idle: int = 30, lifetime: int = 12) -> dict[str, str]:
    return {Path(f.path).name: f.text for f in guardrail_files(idle, lifetime) if f.path.startswith("/etc/systemd/")}


def parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string(text)
    return parser


def test_every_placeholder_is_filled():
    for f in guardrail_files(30, 12):
        assert "${" not in f.text, f"{f.path} still has a placeholder"


@pytest.mark.parametrize("name", sorted(units()))
def test_unit_parses_with_known_keys_only(name):
    unit = parse(units()[name])
    for section in unit.sections():
        assert section in ALLOWED, f"{name}: unknown section [{section}]"
        unknown = set(unit[section]) - ALLOWED[section]
        assert not unknown, f"{name}: unknown keys {unknown} in [{section}]"


def test_units_pass_systemd_analyze_verify(tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing. Fix: bash scripts/system-deps.sh"
    for name, text in units().items():
        (tmp_path / name).write_text(text)
    out = subprocess.run(
        ["systemd-analyze", "verify", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
    )
    ours = [line for line in (out.stdout + out.stderr).splitlines() if str(tmp_path) in line]
    assert out.returncode == 0 and not ours, f"systemd-analyze verify complains: {ours or out.stderr}"


def test_idle_timer_samples_every_minute_and_the_service_gets_the_window():
    timer = parse(units()["gpulab-idle.timer"])
    assert timer["Timer"]["OnUnitActiveSec"] == "1min"
    assert timer["Install"]["WantedBy"] == "timers.target"
    service = parse(units(idle=45)["gpulab-idle.service"])["Service"]
    assert service["Type"] == "oneshot"
    assert service["ExecStart"].startswith(f"/usr/bin/python3 {WATCHER} --window-minutes 45 ")
    assert "--stop-command" not in service["ExecStart"], "on the box the real shutdown must be used"


@pytest.mark.parametrize(("hours", "warn_at"), [(12, "710min"), (1, "50min")])
def test_lifetime_warns_ten_minutes_before_the_stop(hours, warn_at):
    assert parse(units(lifetime=hours)["gpulab-lifetime.timer"])["Timer"]["OnBootSec"] == warn_at
    start = parse(units(lifetime=hours)["gpulab-lifetime.service"])["Service"]["ExecStart"]
    assert start.startswith("/usr/sbin/shutdown -h +10 "), start
    assert f"this instance stops in 10 minutes (gpulab:maxLifetimeHours={hours})" in start


def test_lifetime_counts_from_boot_so_a_restart_is_a_new_lifetime():
    timer = parse(units()["gpulab-lifetime.timer"])["Timer"]
    assert "OnBootSec" in timer and "OnCalendar" not in timer and "Persistent" not in timer


def test_disabled_guardrails_ship_nothing():
    assert guardrail_files(0, 0) == [] and guardrail_timers(0, 0) == []
    assert {Path(f.path).name for f in guardrail_files(0, 12)} == {"gpulab-lifetime.service", "gpulab-lifetime.timer"}
    assert guardrail_timers(30, 0) == ["gpulab-idle.timer"]
    assert guardrail_timers(30, 12) == ["gpulab-idle.timer", "gpulab-lifetime.timer"]


def test_watcher_is_executable_and_units_are_not():
    modes = {Path(f.path).name: f.mode for f in guardrail_files(30, 12)}
    assert modes.pop("idle_watch.py") == "0755"
    assert set(modes.values()) == {"0644"}


def test_shipped_files_fit_in_user_data():
    # user_data is capped at 16 KB and the bootstrap keeps the whole of it under 8 KB.
    files = guardrail_files(30, 12)
    raw = sum(len(f.text.encode()) for f in files)
    packed = sum(len(base64.b64encode(gzip.compress(f.text.encode(), mtime=0))) for f in files)
    assert raw <= 7600, f"guardrail files are {raw} bytes raw; keep them under 7600"
    assert packed <= 5000, f"guardrail files are {packed} bytes as gz+b64; keep them under 5000"


def test_shipped_watcher_is_the_source_minus_comments():
    source = (TEMPLATES / "idle_watch.py").read_text()
    shipped = next(f.text for f in guardrail_files(30, 12) if f.path == WATCHER)
    assert shipped.startswith("#!/usr/bin/env python3\n")
    assert len(shipped) < len(source)
    for needle in ('"--window-minutes"', "no_track_activity=1", "ssm-session-worker", "os.replace("):
        assert needle in shipped, f"{needle} lost in minification"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"idle_stop_minutes": 3, "max_lifetime_hours": 12}, "idle_stop_minutes=3"),
        ({"idle_stop_minutes": -1, "max_lifetime_hours": 12}, "idle_stop_minutes=-1"),
        ({"idle_stop_minutes": 30, "max_lifetime_hours": -2}, "max_lifetime_hours=-2"),
        ({"idle_stop_minutes": 30, "max_lifetime_hours": 12, "jupyter_url": "http://0.0.0.0:8888"}, "jupyter_url"),
        ({"idle_stop_minutes": 30, "max_lifetime_hours": 12, "token_file": "token file"}, "token_file"),
    ],
)
def test_bad_arguments_are_refused_by_name(kwargs, named):
    with pytest.raises(ValueError, match=named):
        guardrail_files(**kwargs)
