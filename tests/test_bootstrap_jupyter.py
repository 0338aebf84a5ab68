"""Policies for the Jupyter the instance runs, checked on a real server started the way the unit
starts it: the shipped wrapper script and the shipped config, on loopback and a free port."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from bootstrap_support import NOTEBOOKS, PARAMS, ROOT, TOKEN, install_instance
from traitlets.config.loader import PyFileConfigLoader


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory):
    root = tmp_path_factory.mktemp("instance")
    env = install_instance(root, PARAMS)
    state = Path(env["GPULAB_STATE"])
    state.mkdir(parents=True)
    notebooks = root / "home/ubuntu/gpulab"
    notebooks.mkdir(parents=True)
    for name in NOTEBOOKS:  # the real shipped notebooks
        shutil.copy(ROOT / "experiment" / "notebooks" / name, notebooks)
    # What first boot records, and the token as systemd's LoadCredential hands it over.
    (state / "runtime.env").write_text(f"GPULAB_PYTHON={sys.executable}\nGPULAB_NOTEBOOK_DIR={notebooks}\n")
    credentials = root / "run/credentials/gpulab-jupyter.service"
    credentials.mkdir(parents=True)
    (credentials / "jupyter-token").write_text(TOKEN)
    (credentials / "jupyter-token").chmod(0o600)
    port = _free_port()
    log = root / "jupyter.log"
    env |= {"CREDENTIALS_DIRECTORY": str(credentials), "HOME": str(root / "home/ubuntu"), "PATH": "/usr/bin:/bin"}
    env["JUPYTER_RUNTIME_DIR"] = str(root / "runtime")
    env["JUPYTER_CONFIG_DIR"] = str(root / "jupyter-config")  # nothing from this machine's own Jupyter setup
    env["JUPYTER_DATA_DIR"] = str(Path(sys.prefix) / "share/jupyter")
    args = [str(root / "opt/gpulab/bin/jupyter"), f"--ServerApp.port={port}"]
    if os.geteuid() == 0:  # CI containers run as root; on the instance the unit runs as the login user
        args.append("--allow-root")
    with log.open("w") as out:
        server = subprocess.Popen(args, env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert server.poll() is None, f"Jupyter exited early:\n{log.read_text()}"
            try:
                if requests.get(f"{base}/api", timeout=2).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.3)
        else:
            pytest.fail(f"Jupyter did not answer within 60 s:\n{log.read_text()}")
        yield {"base": base, "root": root, "log": log, "notebooks": notebooks}
    finally:
        server.terminate()
        server.wait(timeout=20)


def test_shipped_config_binds_loopback_port_8888_with_token_auth(jupyter, monkeypatch):
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(jupyter["root"] / "run/credentials/gpulab-jupyter.service"))
    config = PyFileConfigLoader("jupyter_server_config.py", path=str(jupyter["root"] / "etc/gpulab")).load_config()
    assert config.ServerApp.ip == "127.0.0.1"
    assert config.ServerApp.port == 8888
    assert config.ServerApp.port_retries == 0
    assert config.ServerApp.open_browser is False
    assert config.IdentityProvider.token == TOKEN


def test_config_refuses_to_start_without_a_token(jupyter, tmp_path):
    script = (
        "from traitlets.config.loader import PyFileConfigLoader as L; "
        f"L('jupyter_server_config.py', path={str(jupyter['root'] / 'etc/gpulab')!r}).load_config()"
    )
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "refusing to start" in result.stderr, result.stderr


def test_request_without_the_token_is_refused(jupyter):
    response = requests.get(f"{jupyter['base']}/api/status", timeout=5)
    assert response.status_code == 403, f"/api/status without a token answered {response.status_code}"
    page = requests.get(f"{jupyter['base']}/lab", timeout=5, allow_redirects=False)
    assert page.status_code == 302 and "/login" in page.headers["Location"], "the lab page did not send us to login"
    wrong = requests.get(f"{jupyter['base']}/api/status", headers={"Authorization": "token nope"}, timeout=5)
    assert wrong.status_code == 403


def test_with_the_token_the_api_answers_and_lists_the_notebooks(jupyter):
    auth = {"Authorization": f"token {TOKEN}"}
    status = requests.get(f"{jupyter['base']}/api/status", headers=auth, timeout=5)
    assert status.status_code == 200 and "started" in status.json()
    contents = requests.get(f"{jupyter['base']}/api/contents", headers=auth, timeout=5).json()
    names = {item["name"] for item in contents["content"]}
    assert set(NOTEBOOKS) <= names, f"notebook dir lists {sorted(names)}"


def test_server_is_on_loopback_only(jupyter):
    port = int(jupyter["base"].rsplit(":", 1)[1])
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in listening.splitlines()}
    assert addresses == {"127.0.0.1"}, f"Jupyter listens on {addresses}"


def test_token_never_appears_in_the_server_log(jupyter):
    assert TOKEN not in jupyter["log"].read_text(), "the Jupyter token was written to the server log"


def test_headless_browser_with_the_token_shows_the_notebooks(jupyter, tmp_path):
    # JupyterLab renders in the browser: give it virtual time, then read the DOM it built.
    url = f"{jupyter['base']}/lab?token={TOKEN}"
    screenshot = ROOT / "tests" / "artifacts" / "jupyter-lab.png"
    screenshot.parent.mkdir(exist_ok=True)
    common = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,800",
        "--virtual-time-budget=15000",
    ]
    dom = subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=90,
    ).stdout
    assert "JupyterLab" in dom, "the page is not JupyterLab (login page or error?)"
    for name in NOTEBOOKS:
        assert name in dom, f"the file browser does not list {name}"
    subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={screenshot}", url],
        capture_output=True,
        timeout=90,
        check=True,
    )
    assert screenshot.stat().st_size > 10_000, "the screenshot is (nearly) empty"
