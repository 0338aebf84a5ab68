#!/usr/bin/env python3
"""gpulab idle watcher: stop this instance after N minutes with no activity.

Run once a minute by gpulab-idle.timer with the system python3 (standard library only). Each run
collects one sample of the activity signals, decides, logs one line, and runs the stop command
when the instance has been idle for the whole window. Activity: GPU utilization, a busy Jupyter
kernel or Jupyter activity, an SSH or Session Manager session, CPU load, a running experiment.
The last active time is kept in a state file tied to the boot, so a fresh start is never "idle
since yesterday".
"""

import argparse
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from typing import NamedTuple


class Sample(NamedTuple):
    gpu: list | None  # utilization % per GPU; None: no nvidia-smi (no signal, not an error)
    busy_kernels: int | None  # None: Jupyter not reachable
    jupyter_last: float | None  # newest Jupyter activity, epoch seconds
    load1: float  # 1-minute load average
    ssh: int
    ssm: int
    experiment: str  # "" when none runs


class Decision(NamedTuple):
    stop: bool
    reason: str
    last_active: float


def describe(s, now):
    """Every signal's value, for the one log line per run."""
    gpu = "none" if s.gpu is None else ",".join(f"{u}%" for u in s.gpu)
    if s.busy_kernels is None:
        jup = "unreachable"
    else:
        ago = "never" if s.jupyter_last is None else f"{(now - s.jupyter_last) / 60:.1f} min ago"
        jup = f"{s.busy_kernels} busy kernels, last activity {ago}"
    exp = s.experiment or "none"
    return f"gpu={gpu} jupyter=({jup}) ssh={s.ssh} ssm={s.ssm} load1={s.load1:.2f} experiment={exp}"


def decide(s, last_active, now, window_minutes, gpu_busy=5, cpu_load=0.5):
    """Pure policy: given one sample and the last active time, stop or not, and why."""
    if window_minutes <= 0:
        return Decision(False, "disabled (gpulab:idleStopMinutes: 0)", last_active)
    checks = [
        (s.gpu and max(s.gpu) >= gpu_busy, f"gpu {max(s.gpu or [0])}%"),
        (s.busy_kernels, f"{s.busy_kernels} busy Jupyter kernel(s)"),
        (s.ssh, f"{s.ssh} SSH session(s)"),
        (s.ssm, f"{s.ssm} Session Manager session(s)"),
        (s.load1 >= cpu_load, f"cpu load {s.load1:.2f}"),
        (s.experiment, f"experiment {s.experiment}"),
    ]
    busy = [why for hit, why in checks if hit]
    if busy:
        return Decision(False, "active: " + ", ".join(busy), now)
    # Jupyter says when it last saw activity; counting from then (not from now) keeps the window exact.
    since = "the last activity"
    if s.jupyter_last is not None and s.jupyter_last > last_active:
        last_active, since = min(s.jupyter_last, now), "Jupyter's last activity"
    idle = (now - last_active) / 60
    if idle >= window_minutes:
        return Decision(True, f"idle: {idle:.1f} of {window_minutes} minutes since {since}, stopping", last_active)
    return Decision(False, f"idle: {idle:.1f} of {window_minutes} minutes since {since}", last_active)


def read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def gpu_utilization():
    cmd = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    values = [int(v) for v in out.stdout.split() if v.isdigit()]
    return values if out.returncode == 0 and values else None


def _ts(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def jupyter(url, token_file):
    """(busy kernels, newest activity) from Jupyter's REST API; (None, None) when unreachable."""
    auth = {"Authorization": f"token {read(token_file)}"}

    def get(path):
        # no_track_activity: our own polling must not count as a user's activity.
        req = urllib.request.Request(f"{url}{path}?no_track_activity=1", headers=auth)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    try:
        status, kernels = get("/api/status"), get("/api/kernels")
    except (OSError, ValueError):
        return None, None
    stamps = [t for t in map(_ts, [status.get("last_activity")] + [k.get("last_activity") for k in kernels]) if t]
    return sum(k.get("execution_state") == "busy" for k in kernels), max(stamps, default=None)


SSHD = re.compile(r"^sshd(-session)?: \S+@")  # one per login, also for `ssh -N -L` tunnels


def processes(proc, lock_file):
    """(SSH sessions, Session Manager sessions, running experiment) from /proc and the lock file."""
    ssh = ssm = 0
    experiment = ""
    for pid in filter(str.isdigit, os.listdir(proc)):
        argv = read(f"{proc}/{pid}/cmdline").split("\0")
        if pid == str(os.getpid()):
            continue
        ssh += bool(SSHD.match(argv[0]))
        ssm += os.path.basename(argv[0]) == "ssm-session-worker"
        module = any(a == "-m" and b.split(".")[0] == "experiment" for a, b in itertools.pairwise(argv))
        if module or "gpulab-experiment" in map(os.path.basename, argv):
            experiment = experiment or f"pid {pid}"
    pid = (read(lock_file).split() or ["-"])[0]  # the experiment writes its pid there while it runs
    if pid.isdigit() and os.path.isdir(f"{proc}/{pid}"):
        experiment = experiment or f"lock pid {pid}"
    return ssh, ssm, experiment


def main(argv=None):
    p = argparse.ArgumentParser(description="Stop this instance after N minutes with no activity (gpulab).")
    p.add_argument("--window-minutes", type=int, required=True, help="idle minutes before stopping; 0 disables")
    p.add_argument("--jupyter-url", default="http://127.0.0.1:8888")
    p.add_argument("--token-file", default="/etc/gpulab/jupyter-token")
    p.add_argument("--state-file", default="/var/lib/gpulab/idle-state.json")
    p.add_argument("--lock-file", default="/var/lib/gpulab/experiment.lock")
    p.add_argument("--stop-command", help="default: shutdown -h now, with a wall message")
    p.add_argument("--gpu-busy", type=int, default=5, help="GPU utilization %% that counts as activity")
    p.add_argument("--cpu-load", type=float, default=0.5, help="1-minute load average that counts as activity")
    # Tests only: a stand-in /proc (so the host's own load and sessions don't leak in) and clock.
    p.add_argument("--proc", default="/proc", help=argparse.SUPPRESS)
    p.add_argument("--now", type=float, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    now = time.time() if a.now is None else a.now
    if a.window_minutes <= 0:
        print("gpulab-idle: disabled (gpulab:idleStopMinutes: 0)", flush=True)
        return 0
    busy, last = jupyter(a.jupyter_url.rstrip("/"), a.token_file)
    load1 = float(read(f"{a.proc}/loadavg").split()[0])
    sample = Sample(gpu_utilization(), busy, last, load1, *processes(a.proc, a.lock_file))
    # The state belongs to one boot: after a stop/start the window starts again from now.
    boot = read(f"{a.proc}/sys/kernel/random/boot_id")
    try:
        state = json.loads(read(a.state_file))
        last_active = float(state["last_active"]) if state["boot_id"] == boot else now
    except (ValueError, KeyError, TypeError):
        last_active = now
    d = decide(sample, last_active, now, a.window_minutes, a.gpu_busy, a.cpu_load)
    # Atomic write: a crash mid-write must never leave a state that stops the box at the next run.
    os.makedirs(os.path.dirname(a.state_file), exist_ok=True)
    with open(f"{a.state_file}.tmp", "w") as f:
        json.dump({"boot_id": boot, "last_active": d.last_active}, f)
    os.replace(f"{a.state_file}.tmp", a.state_file)
    print(f"gpulab-idle: {d.reason} | {describe(sample, now)}", flush=True)
    if not d.stop:
        return 0
    msg = f"gpulab: idle for {a.window_minutes} minutes, stopping (gpulab:idleStopMinutes); disk and bucket are kept"
    cmd = shlex.split(a.stop_command) if a.stop_command else ["shutdown", "-h", "now", msg]
    return subprocess.run(cmd).returncode


if __name__ == "__main__":
    sys.exit(main())
