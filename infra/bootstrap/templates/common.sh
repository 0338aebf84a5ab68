# shellcheck shell=bash
# gpulab on-instance helpers, sourced by the scripts in /opt/gpulab/bin. Not executable by itself.
# Every path and command can be overridden by environment (GPULAB_ETC, GPULAB_STATE, GPULAB_OPT,
# GPULAB_AWS, GPULAB_SYSTEMCTL, GPULAB_PYTHON, GPULAB_USER) so the same scripts run in local tests.
# Never `set -x` here or in a caller: the Jupyter token passes through a variable.

GPULAB_ETC=${GPULAB_ETC:-/etc/gpulab}
GPULAB_STATE=${GPULAB_STATE:-/var/lib/gpulab}
GPULAB_OPT=${GPULAB_OPT:-/opt/gpulab}
GPULAB_AWS=${GPULAB_AWS:-aws}
GPULAB_SYSTEMCTL=${GPULAB_SYSTEMCTL:-systemctl}
GPULAB_RUNS=${GPULAB_RUNS:-$GPULAB_STATE/runs}
GPULAB_TAG=${1:-gpulab} # the log prefix: the name the caller passed to `. common.sh NAME`

log() { printf '%s %s: %s\n' "$(date -u +%H:%M:%SZ)" "$GPULAB_TAG" "$*"; }
warn() { log "WARNING: $*" >&2; }
die() {
  log "FAILED: $*" >&2
  exit 1
}

# Settings from the stack (gpulab.env, rendered into user_data) and facts found at first boot (runtime.env).
load_env() {
  [[ -r $GPULAB_ETC/gpulab.env ]] || die "no $GPULAB_ETC/gpulab.env: see /var/log/cloud-init-output.log"
  # shellcheck source=/dev/null
  . "$GPULAB_ETC/gpulab.env"
  local python=${GPULAB_PYTHON:-} # an explicit GPULAB_PYTHON wins over the recorded one
  if [[ -r $GPULAB_STATE/runtime.env ]]; then
    # shellcheck source=/dev/null
    . "$GPULAB_STATE/runtime.env"
  fi
  GPULAB_PYTHON=${python:-${GPULAB_PYTHON:-}}
}

# retry N CMD...: for the first minutes of an instance's life (IAM role propagation, network).
retry() {
  local tries=${GPULAB_RETRIES:-$1} n=1 delay=5
  shift
  until "$@"; do
    ((n >= tries)) && return 1
    warn "try $n/$tries of $1 ${2:-} failed"
    sleep "$delay"
    n=$((n + 1))
    delay=$((delay * 2 > 60 ? 60 : delay * 2))
  done
}

ssm_value() { # ssm_value NAME [--with-decryption]
  "$GPULAB_AWS" ssm get-parameter --region "$GPULAB_REGION" --name "$1" ${2:+"$2"} \
    --query Parameter.Value --output text
}

# The archive key the SSM code parameter names now; only content-named archives under code/ are accepted.
current_code_key() {
  local key
  key=$(retry 6 ssm_value "$GPULAB_CODE_PARAMETER") || die "cannot read SSM parameter $GPULAB_CODE_PARAMETER"
  [[ $key =~ ^code/gpulab-[0-9a-f]{16}\.tar\.gz$ ]] || die "$GPULAB_CODE_PARAMETER holds '$key', not code/gpulab-<16 hex>.tar.gz"
  printf '%s\n' "$key"
}

need_setup() { [[ -n ${GPULAB_PYTHON:-} ]] || die "no $GPULAB_STATE/runtime.env yet. Fix: sudo systemctl restart gpulab-boot"; }

installed_code_key() { cat "$GPULAB_STATE/installed-code-key" 2>/dev/null || true; }

# Write a file atomically with the given mode: content on stdin.
write_atomic() { # write_atomic PATH MODE
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp"
  chmod "$2" "$tmp"
  mv -f "$tmp" "$1"
}
