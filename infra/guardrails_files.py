"""The on-instance guardrails as files for user_data: the idle watcher and the max-lifetime stop.

The templates live in infra/bootstrap/guardrails/ and use string.Template `${VAR}` placeholders:

- IDLE_MINUTES: gpulab:idleStopMinutes, the idle window (gpulab-idle.service).
- WATCHER, STATE_FILE, LOCK_FILE: where the watcher, its state and the experiment's pid lock live.
- JUPYTER_URL, TOKEN_FILE: the loopback Jupyter server and the root-only file holding its token.
- LIFETIME_HOURS: gpulab:maxLifetimeHours (the wall message); WARN_AFTER_MINUTES: lifetime minus
  10 minutes, when gpulab-lifetime.timer fires and schedules the stop 10 minutes later.

The renderer writes each file at its path and mode, then runs `systemctl daemon-reload` and
`systemctl enable --now` on guardrail_timers(). A disabled guardrail (0) contributes nothing.
"""

import ast
import io
import re
import tokenize
from pathlib import Path
from string import Template
from typing import NamedTuple

TEMPLATES = Path(__file__).parent / "bootstrap" / "guardrails"
WATCHER = "/usr/local/lib/gpulab/idle_watch.py"
UNIT_DIR = "/etc/systemd/system"
STATE_FILE = "/var/lib/gpulab/idle-state.json"
LOCK_FILE = "/var/lib/gpulab/experiment.lock"
JUPYTER_URL = "http://127.0.0.1:8888"
TOKEN_FILE = "/etc/gpulab/jupyter-token"
WARN_MINUTES = 10  # the wall message comes this long before the lifetime stop


class InstanceFile(NamedTuple):
    path: str  # absolute path on the instance
    mode: str  # octal, as cloud-init's write_files wants it
    text: str


def ship_python(source: str) -> str:
    """The watcher as shipped: docstrings, comments and blank lines dropped, one space per indent level.

    user_data is capped at 16 KB, so the box gets a compact but otherwise identical program; the
    tests run this shipped text, not the readable source. Line-based, so the result is the same on
    every Python version (an AST round trip would not be).
    """
    tree = ast.parse(source)
    drop: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            drop.update(range(body[0].lineno, body[0].end_lineno + 1))
    comments = {}  # line -> column where a comment starts
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT and tok.start[0] > 1:  # keep the shebang
            comments[tok.start[0]] = tok.start[1]
    out = []
    for number, line in enumerate(source.splitlines(), 1):
        if number in drop:
            continue
        if number in comments:
            line = line[: comments[number]].rstrip()
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        out.append(" " * (indent // 4) + line[indent:])
    shipped = "\n".join(out) + "\n"
    compile(shipped, WATCHER, "exec")  # a broken minification fails at deploy time, not on the box
    return shipped


def _render(name: str, **values: object) -> str:
    return Template((TEMPLATES / name).read_text()).substitute({k: str(v) for k, v in values.items()})


def _check(idle_stop_minutes: int, max_lifetime_hours: int, jupyter_url: str, token_file: str) -> None:
    if not isinstance(idle_stop_minutes, int) or idle_stop_minutes < 0 or 0 < idle_stop_minutes < 5:
        raise ValueError(f"idle_stop_minutes={idle_stop_minutes!r}: use 0 (disabled) or 5 and more minutes")
    if not isinstance(max_lifetime_hours, int) or max_lifetime_hours < 0:
        raise ValueError(f"max_lifetime_hours={max_lifetime_hours!r}: use 0 (disabled) or a whole number of hours")
    if not re.fullmatch(r"http://(127\.0\.0\.1|localhost):\d+(/\S*)?", jupyter_url):
        raise ValueError(f"jupyter_url={jupyter_url!r}: use the loopback server, e.g. {JUPYTER_URL}")
    if not re.fullmatch(r"/[\w./-]+", token_file):
        raise ValueError(f"token_file={token_file!r}: use an absolute path without spaces, e.g. {TOKEN_FILE}")


def guardrail_files(
    idle_stop_minutes: int,
    max_lifetime_hours: int,
    *,
    jupyter_url: str = JUPYTER_URL,
    token_file: str = TOKEN_FILE,
) -> list[InstanceFile]:
    """The files to write on the instance: (path, mode, text) each; none for a disabled guardrail."""
    _check(idle_stop_minutes, max_lifetime_hours, jupyter_url, token_file)
    files = []
    if idle_stop_minutes:
        watcher = ship_python((TEMPLATES / "idle_watch.py").read_text())
        service = _render(
            "gpulab-idle.service",
            IDLE_MINUTES=idle_stop_minutes,
            WATCHER=WATCHER,
            JUPYTER_URL=jupyter_url,
            TOKEN_FILE=token_file,
            STATE_FILE=STATE_FILE,
            LOCK_FILE=LOCK_FILE,
        )
        files += [
            InstanceFile(WATCHER, "0755", watcher),
            InstanceFile(f"{UNIT_DIR}/gpulab-idle.service", "0644", service),
            InstanceFile(f"{UNIT_DIR}/gpulab-idle.timer", "0644", _render("gpulab-idle.timer")),
        ]
    if max_lifetime_hours:
        warn_after = max_lifetime_hours * 60 - WARN_MINUTES
        files += [
            InstanceFile(
                f"{UNIT_DIR}/gpulab-lifetime.service",
                "0644",
                _render("gpulab-lifetime.service", LIFETIME_HOURS=max_lifetime_hours),
            ),
            InstanceFile(
                f"{UNIT_DIR}/gpulab-lifetime.timer",
                "0644",
                _render("gpulab-lifetime.timer", WARN_AFTER_MINUTES=warn_after),
            ),
        ]
    return files


def guardrail_timers(idle_stop_minutes: int, max_lifetime_hours: int) -> list[str]:
    """The timers to `systemctl enable --now` after writing guardrail_files()."""
    return [
        *(["gpulab-idle.timer"] if idle_stop_minutes else []),
        *(["gpulab-lifetime.timer"] if max_lifetime_hours else []),
    ]
