# gpulab's Jupyter server config: loopback only, token auth, the gpulab notebook directory.
# The token is read at start from $CREDENTIALS_DIRECTORY/jupyter-token (systemd's LoadCredential copy
# of the root-only /etc/gpulab/jupyter-token), never from this file, the command line or the environment.
import os
from pathlib import Path

c = get_config()  # type: ignore[name-defined]  # noqa: F821

_file = Path(os.environ.get("CREDENTIALS_DIRECTORY", "/nonexistent"), "jupyter-token")
_token = _file.read_text().strip() if _file.is_file() else ""
if len(_token) < 32:
    raise SystemExit(f"gpulab: no Jupyter token of 32+ characters in {_file}; refusing to start")

c.ServerApp.ip = "127.0.0.1"
c.ServerApp.port = 8888
c.ServerApp.port_retries = 0  # never drift to another port: the tunnel targets 8888
c.ServerApp.open_browser = False
c.ServerApp.allow_remote_access = False
c.ServerApp.root_dir = os.environ.get("GPULAB_NOTEBOOK_DIR") or str(Path.home() / "gpulab")
c.IdentityProvider.token = _token
c.PasswordIdentityProvider.allow_password_change = False
