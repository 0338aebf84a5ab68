#!/usr/bin/env bash
# gpulab first boot (run by /opt/gpulab/bin/boot while $GPULAB_STATE/runtime.env is missing):
# finds the login user and the AMI's PyTorch environment and records them in runtime.env.
set -euo pipefail
# shellcheck source=/dev/null
. "${GPULAB_LIB:-/opt/gpulab/lib/common.sh}" gpulab-first-boot
load_env

# The AMI's default user: the one cloud-init created (uid 1000 on Ubuntu and Amazon Linux images).
find_user() {
  local user=${GPULAB_USER:-}
  [[ -n $user ]] || user=$(getent passwd 1000 | cut -d: -f1)
  [[ -n $user ]] || for user in ubuntu ec2-user ''; do getent passwd "$user" >/dev/null && break; done
  [[ -n $user ]] || die "no login user (uid 1000, ubuntu, ec2-user)"
  printf '%s\n' "$user"
}

# The AMI's PyTorch: /opt/pytorch on current Deep Learning AMIs, a conda env with torch on older ones.
find_torch_python() {
  local candidate
  shopt -s nullglob
  for candidate in ${GPULAB_PYTHON:+"$GPULAB_PYTHON"} /opt/pytorch/bin/python3 \
    /opt/conda/envs/pytorch/bin/python3 /opt/conda/envs/*/bin/python3 /home/*/anaconda3/envs/pytorch*/bin/python3; do
    if [[ -x $candidate ]] && "$candidate" -c 'import torch' >/dev/null 2>&1; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  return 1
}

# No PyTorch on this image: make our own venv with PyPI's torch (CUDA-enabled wheels on Linux x86-64).
make_torch_venv() {
  local venv=$GPULAB_OPT/venv
  warn "no env with torch on this AMI: making $venv with torch from PyPI"
  { python3 -m venv "$venv" && "$venv/bin/python" -m pip install -q torch torchvision; } >&2 ||
    die "could not make $venv with torch"
  printf '%s\n' "$venv/bin/python"
}

user=$(find_user)
home=$(getent passwd "$user" | cut -d: -f6)
python=$(find_torch_python) || python=$(make_torch_venv)
torch_version=$("$python" -c 'import torch; print(torch.__version__)')
log "login user $user, PyTorch environment $python (torch $torch_version)"

notebooks=${GPULAB_NOTEBOOK_DIR:-$home/gpulab}
install -d -m 0755 "$GPULAB_STATE" "$GPULAB_OPT/code"
install -d -m 0755 "$GPULAB_RUNS" "$notebooks"
if ((EUID == 0)); then chown "$user:$(id -gn "$user")" "$GPULAB_RUNS" "$notebooks"; fi
# Runs are visible from Jupyter's file browser too.
[[ -e $notebooks/runs ]] || ln -s "$GPULAB_RUNS" "$notebooks/runs"

{
  echo "# Found by gpulab first boot; delete this file to detect again on the next boot."
  printf 'GPULAB_USER=%q\nGPULAB_HOME=%q\nGPULAB_PYTHON=%q\nGPULAB_NOTEBOOK_DIR=%q\n' "$user" "$home" "$python" "$notebooks"
} | write_atomic "$GPULAB_STATE/runtime.env" 0644
log "first-boot setup done"
