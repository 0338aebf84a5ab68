#!/usr/bin/env bash
# gpulab-jupyter.service's command: JupyterLab from the AMI's PyTorch environment with gpulab's config.
# Extra arguments pass through to Jupyter (tests use them to pick a free port).
set -euo pipefail
# shellcheck source=/dev/null
. "${GPULAB_LIB:-/opt/gpulab/lib/common.sh}" gpulab-jupyter
load_env
need_setup
export GPULAB_NOTEBOOK_DIR
exec "$GPULAB_PYTHON" -m jupyterlab --config="$GPULAB_ETC/jupyter_server_config.py" "$@"
