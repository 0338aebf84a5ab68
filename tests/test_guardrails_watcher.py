"""Policies for the on-instance idle watcher: what counts as activity, and when the box stops.

Everything here runs the watcher exactly as shipped in user_data (guardrail_files()'s minified text):
first its pure decide() against recorded signals, then the whole program for real against a local
Jupyter server, with a stand-in /proc (so this machine's own load and logins don't leak in) and a
stand-in stop command that writes a marker file.
"""

import json
import os
import socket
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

import pytest

from infra.guardrails_files import WATCHER, guardrail_files

NOW = 1_750_000_000.0
MIN = 60.0
SYSTEM_PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def shipped_text() -> str:
    return next(f.text for f in guardrail_files(30, 12) if f.path == WATCHER)


@pytest.fixture(scope="module")
def w() -> types.ModuleType:
    module = types.ModuleType("idle_watch")
    exec(compile(shipped_text(), WATCHER, "exec"), module.__dict__)
    return module


def quiet(w, **changes):
    """A sample with no activity at all; each test turns on one signal."""
    base = w.Sample(gpu=[0], busy_kernels=0, jupyter_last=None, load1=0.02, ssh=0, ssm=0, experiment="")
    return base._replace(**changes)


# --- decide(): one policy each, against recorded signals ------------------------------------------


def test_idle_past_the_window_stops(w):
    d = w.decide(quiet(w), last_active=NOW - 31 * MIN, now=NOW, window_minutes=30)
    assert d.stop, f"31 quiet minutes with a 30-minute window must stop; got {d}"
    assert "idle" in d.reason and "stopping" in d.reason


def test_idle_inside_the_window_keeps_running(w):
    d = w.decide(quiet(w), last_active=NOW - 29 * MIN, now=NOW, window_minutes=30)
    assert not d.stop, f"29 quiet minutes of 30 must not stop; got {d}"
    assert d.last_active == NOW - 29 * MIN, "an idle sample must not move the last active time"


def test_busy_gpu_keeps_running_even_with_a_quiet_cpu(w):
    d = w.decide(quiet(w, gpu=[0, 87], load1=0.0), last_active=NOW - 5 * 60 * MIN, now=NOW, window_minutes=30)
    assert not d.stop, f"a GPU at 87% is activity even when the CPU is quiet; got {d}"
    assert "gpu 87%" in d.reason
    assert d.last_active == NOW


def test_gpu_below_threshold_is_not_activity(w):
    d = w.decide(quiet(w, gpu=[3]), last_active=NOW - 31 * MIN, now=NOW, window_minutes=30)
    assert d.stop, f"3% GPU utilization (an idle driver) must not keep the box up; got {d}"


def test_busy_kernel_keeps_running(w):
    d = w.decide(quiet(w, busy_kernels=1), last_active=NOW - 60 * MIN, now=NOW, window_minutes=30)
    assert not d.stop and "busy Jupyter kernel" in d.reason, d


def test_recent_jupyter_activity_keeps_running(w):
    sample = quiet(w, jupyter_last=NOW - 5 * MIN)
    d = w.decide(sample, last_active=NOW - 120 * MIN, now=NOW, window_minutes=30)
    assert not d.stop, f"Jupyter activity 5 minutes ago is inside the 30-minute window; got {d}"
    assert d.last_active == NOW - 5 * MIN, "the window counts from Jupyter's own last activity, not from now"
    assert "Jupyter" in d.reason


def test_old_jupyter_activity_does_not_keep_running(w):
    sample = quiet(w, jupyter_last=NOW - 45 * MIN)
    d = w.decide(sample, last_active=NOW - 120 * MIN, now=NOW, window_minutes=30)
    assert d.stop, f"Jupyter activity 45 minutes ago is outside a 30-minute window; got {d}"


@pytest.mark.parametrize("signal", [{"ssh": 1}, {"ssm": 1}], ids=["ssh", "session-manager"])
def test_login_session_keeps_running(w, signal):
    d = w.decide(quiet(w, **signal), last_active=NOW - 60 * MIN, now=NOW, window_minutes=30)
    assert not d.stop and "session" in d.reason, f"an open {signal} session is activity; got {d}"


def test_cpu_load_keeps_running(w):
    d = w.decide(quiet(w, load1=2.0), last_active=NOW - 60 * MIN, now=NOW, window_minutes=30)
    assert not d.stop and "cpu load 2.00" in d.reason, d


def test_running_experiment_keeps_running(w):
    d = w.decide(quiet(w, experiment="pid 4242"), last_active=NOW - 60 * MIN, now=NOW, window_minutes=30)
    assert not d.stop and "experiment pid 4242" in d.reason, d


def test_missing_nvidia_smi_is_no_signal_not_an_error(w, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no nvidia-smi anywhere
    assert w.gpu_utilization() is None
    d = w.decide(quiet(w, gpu=None), last_active=NOW - 31 * MIN, now=NOW, window_minutes=30)
    assert d.stop, f"without nvidia-smi the other signals still decide; got {d}"
    assert "gpu=none" in w.describe(quiet(w, gpu=None), NOW)


def test_nvidia_smi_reports_every_gpu(w, monkeypatch, tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nprintf '0\\n64\\n'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert w.gpu_utilization() == [0, 64]


def test_window_zero_is_disabled(w):
    d = w.decide(quiet(w), last_active=NOW - 10_000 * MIN, now=NOW, window_minutes=0)
    assert not d.stop and "disabled" in d.reason, d


def test_log_line_names_every_signal(w):
    line = w.describe(quiet(w, gpu=[12], busy_kernels=2, jupyter_last=NOW - 90, ssh=1, experiment="pid 7"), NOW)
    for part in ("gpu=12%", "2 busy kernels", "1.5 min ago", "ssh=1", "ssm=0", "load1=0.02", "experiment=pid 7"):
        assert part in line, f"{part!r} missing from the log line {line!r}"


def fake_proc(root: Path, processes: dict[int, list[str]], load: str = "0.01", boot: str = "boot-a") -> Path:
    """A stand-in /proc: loadavg, boot_id and one cmdline per process."""
    (root / "sys/kernel/random").mkdir(parents=True, exist_ok=True)
    (root / "sys/kernel/random/boot_id").write_text(boot + "\n")
    (root / "loadavg").write_text(f"{load} 0.00 0.00 1/99 1234\n")
    for pid, argv in processes.items():
        (root / str(pid)).mkdir()
        (root / str(pid) / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")
    return root


def test_processes_find_ssh_tunnels_ssm_sessions_and_experiments(w, tmp_path):
    proc = fake_proc(
        tmp_path / "proc",
        {
            10: ["/usr/sbin/sshd", "-D"],  # the daemon itself is no session
            11: ["sshd: ubuntu [priv]"],
            12: ["sshd: ubuntu@notty"],  # `ssh -N -L` tunnel: no utmp entry, still a session
            13: ["sshd-session: ubuntu@pts/0"],  # OpenSSH >= 9.8 names it so
            20: ["/usr/bin/amazon-ssm-agent"],
            21: ["/usr/bin/ssm-session-worker", "ubuntu-0abc", "i-0123"],
            30: ["/opt/pytorch/bin/python", "-m", "experiment.cli", "all"],
        },
    )
    assert w.processes(str(proc), str(tmp_path / "no-lock")) == (2, 1, "pid 30")


def test_experiment_lock_counts_only_while_its_process_lives(w, tmp_path):
    proc = fake_proc(tmp_path / "proc", {77: ["/opt/pytorch/bin/python", "train.py"]})
    lock = tmp_path / "experiment.lock"
    lock.write_text("77\n")
    assert w.processes(str(proc), str(lock))[2] == "lock pid 77"
    lock.write_text("78\n")  # stale: that process is gone
    assert w.processes(str(proc), str(lock))[2] == ""


# --- the whole program, for real ------------------------------------------------------------------


class Box:
    """The watcher's surroundings on a test machine: stand-in /proc, stop command, state, token."""

    def __init__(self, root: Path, url: str, token: str):
        self.root, self.url = root, url
        self.proc = fake_proc(root / "proc", {})
        self.state = root / "state" / "idle-state.json"
        self.marker = root / "stopped"
        self.token_file = root / "jupyter-token"
        self.token_file.write_text(token + "\n")
        self.token_file.chmod(0o600)
        stop = root / "fake-shutdown"
        stop.write_text('#!/bin/sh\n# stands in for `shutdown -h now`\nprintf "%s\\n" "$*" > "$1"\n')
        stop.chmod(0o755)
        self.stop = stop

    def backdate(self, last_active: float) -> None:
        self.state.parent.mkdir(exist_ok=True)
        self.state.write_text(json.dumps({"boot_id": "boot-a", "last_active": last_active}))

    def run(self, window: int, now: float, extra: tuple[str, ...] = ()) -> str:
        cmd = [SYSTEM_PYTHON, str(self.root / "idle_watch.py"), "--window-minutes", str(window)]
        cmd += ["--jupyter-url", self.url, "--token-file", str(self.token_file), "--state-file", str(self.state)]
        cmd += ["--lock-file", str(self.root / "experiment.lock"), "--proc", str(self.proc), "--now", str(now)]
        cmd += ["--stop-command", f"{self.stop} {self.marker}", *extra]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.root)}  # no nvidia-smi here
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode == 0, f"the watcher failed: {out.stderr}"
        assert out.stdout.count("\n") == 1, f"one log line per run expected, got {out.stdout!r}"
        return out.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    """A real jupyter_server on loopback with token auth, and a helper to call its REST API."""
    root = tmp_path_factory.mktemp("jupyter")
    token = "test-token-" + os.urandom(12).hex()
    port = free_port()
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(root / "runtime"), "JUPYTER_DATA_DIR": str(root / "data")}
    env["JUPYTER_CONFIG_DIR"] = str(root / "config")
    args = ["--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0"]
    args += [f"--IdentityProvider.token={token}", "--ServerApp.open_browser=False", f"--ServerApp.root_dir={root}"]
    args += ["--allow-root"]  # CI containers run as root
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(root / "server.log", "w"),  # noqa: SIM115 - lives as long as the server
    )
    url = f"http://127.0.0.1:{port}"

    def api(method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url + path, data=data, method=method, headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read()
        return json.loads(text) if text else None

    deadline = time.monotonic() + 60
    while True:
        try:
            api("GET", "/api/status")
            break
        except OSError as err:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"jupyter server did not start: {(root / 'server.log').read_text()[-2000:]}"
                ) from err
            time.sleep(0.3)
    yield types.SimpleNamespace(url=url, token=token, api=api, runtime=root / "runtime")
    server.terminate()
    server.wait(timeout=20)


@pytest.fixture
def box(tmp_path, jupyter):
    b = Box(tmp_path, jupyter.url, jupyter.token)
    (tmp_path / "idle_watch.py").write_text(shipped_text())
    return b


def wait_for_state(jupyter, kernel_id: str, state: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (now := jupyter.api("GET", f"/api/kernels/{kernel_id}")["execution_state"]) != state:
        assert time.monotonic() < deadline, f"kernel stayed {now!r}, expected {state!r}"
        time.sleep(0.2)


@pytest.fixture
def kernel(jupyter):
    """A kernel started through the REST API, with a client attached as a notebook tab would be."""
    from jupyter_client import BlockingKernelClient

    k = jupyter.api("POST", "/api/kernels", {"name": "python3"})
    client = BlockingKernelClient(connection_file=str(jupyter.runtime / f"kernel-{k['id']}.json"))
    client.load_connection_file()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    # A kernel nobody has talked to stays "starting" in the server's eyes, and the server's own iopub
    # subscription may join after our first request: ask again until the server has seen it go idle.
    deadline = time.monotonic() + 60
    while jupyter.api("GET", f"/api/kernels/{k['id']}")["execution_state"] != "idle":
        assert time.monotonic() < deadline, "the kernel never showed as idle in the server"
        client.kernel_info()
        time.sleep(0.5)
    yield types.SimpleNamespace(id=k["id"], client=client)
    client.stop_channels()
    jupyter.api("DELETE", f"/api/kernels/{k['id']}")


def test_real_idle_kernel_past_the_window_stops(box, kernel):
    t = time.time()
    first = box.run(window=1, now=t)  # the first run of a boot starts the window
    assert "idle: 0.0 of 1 minutes" in first and not box.marker.exists(), first
    second = box.run(window=1, now=t + 90)  # the timer's run 90 s later, nobody touched anything
    assert box.marker.exists(), f"an idle kernel past the 1-minute window must stop the box; log: {second}"
    assert "stopping" in second and "0 busy kernels" in second, second


def test_real_busy_kernel_does_not_stop(box, jupyter, kernel):
    kernel.client.execute("import time; time.sleep(30)")  # a cell still running
    try:
        wait_for_state(jupyter, kernel.id, "busy")
        t = time.time()
        box.backdate(t - 600)  # nothing else has happened for 10 minutes
        log = box.run(window=1, now=t + 120)  # and Jupyter's last activity is 2 minutes old by then
        assert not box.marker.exists(), f"a busy kernel must keep the box up; log: {log}"
        assert "active: 1 busy Jupyter kernel(s)" in log, log
    finally:
        jupyter.api("POST", f"/api/kernels/{kernel.id}/interrupt")


def test_real_recent_activity_does_not_stop(box, jupyter, kernel):
    t = time.time()
    box.backdate(t - 600)
    jupyter.api("GET", "/api/contents")  # a user opening the file browser: Jupyter activity now
    log = box.run(window=1, now=time.time() + 5)
    assert not box.marker.exists(), f"Jupyter activity seconds ago must keep the box up; log: {log}"
    assert "since Jupyter's last activity" in log, log


def test_real_watcher_polling_is_not_activity(box, jupyter, kernel):
    before = jupyter.api("GET", "/api/status?no_track_activity=1")["last_activity"]
    t = time.time()
    box.run(window=1, now=t)
    box.run(window=1, now=t + 1)
    after = jupyter.api("GET", "/api/status?no_track_activity=1")["last_activity"]
    assert after == before, "the watcher's own REST calls must not count as user activity"


def test_real_new_boot_starts_a_new_window(box):
    box.state.parent.mkdir(exist_ok=True)
    box.state.write_text(json.dumps({"boot_id": "an-earlier-boot", "last_active": time.time() - 86_400}))
    log = box.run(window=1, now=time.time())
    assert not box.marker.exists(), f"yesterday's idle time must not stop a box that just started; log: {log}"
    assert json.loads(box.state.read_text())["boot_id"] == "boot-a"


def test_real_unreachable_jupyter_and_no_gpu_are_logged_not_fatal(box):
    box.url = "http://127.0.0.1:9"  # nothing listens there
    log = box.run(window=1, now=time.time())
    assert "jupyter=(unreachable)" in log and "gpu=none" in log, log


def test_real_state_file_is_written_atomically(box):
    box.run(window=1, now=time.time())
    assert json.loads(box.state.read_text())["boot_id"] == "boot-a"
    assert [p.name for p in box.state.parent.iterdir()] == [box.state.name], "no temporary file left behind"


def test_real_window_zero_never_stops(box):
    box.backdate(time.time() - 86_400)
    log = box.run(window=0, now=time.time())
    assert "disabled" in log and not box.marker.exists(), log
