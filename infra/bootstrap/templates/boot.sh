#!/usr/bin/env bash
# gpulab-boot.service's command, on every boot: first-boot setup when needed, the Jupyter token from
# SSM, the code from S3 when it changed, Jupyter (re)started, runs started or resumed, then the
# readiness marker. Any failure exits non-zero and leaves no marker.
set -euo pipefail
# shellcheck source=/dev/null
. "${GPULAB_LIB:-/opt/gpulab/lib/common.sh}" gpulab-boot
GPULAB_SYSTEMD=${GPULAB_SYSTEMD:-/etc/systemd/system}
GPULAB_CURL=${GPULAB_CURL:-curl}
load_env
mkdir -p "$GPULAB_STATE"
rm -f "$GPULAB_STATE/ready"
on_exit() {
  local status=$?
  ((status == 0)) || log "FAILED (exit $status): not ready. Details above; retry with: sudo systemctl restart gpulab-boot" >&2
}
trap on_exit EXIT

if [[ ! -f $GPULAB_STATE/runtime.env ]]; then
  log "first boot of this instance (stack $GPULAB_STACK, region $GPULAB_REGION)"
  "$GPULAB_OPT/bin/first-boot"
  load_env
else
  log "later boot: refreshing code if it changed, restarting Jupyter, resuming unfinished runs"
fi
group=$(id -gn "$GPULAB_USER")

# The token goes straight from SSM into a root-only file; it is never echoed or logged.
token_file=$GPULAB_ETC/jupyter-token
if token=$(retry 6 ssm_value "$GPULAB_TOKEN_PARAMETER" --with-decryption) && ((${#token} >= 32)); then
  printf '%s' "$token" | write_atomic "$token_file" 0600
  unset token
  log "Jupyter token read from SSM parameter $GPULAB_TOKEN_PARAMETER"
elif [[ -s $token_file ]]; then
  warn "cannot read $GPULAB_TOKEN_PARAMETER; keeping the previous token"
else
  die "cannot read the Jupyter token (32+ characters) from SSM parameter $GPULAB_TOKEN_PARAMETER"
fi

degraded=""
if [[ -z $(installed_code_key) ]]; then
  "$GPULAB_OPT/bin/refresh" --no-restart
elif ! "$GPULAB_OPT/bin/refresh" --no-restart; then
  degraded="code refresh failed; Jupyter runs the installed $(installed_code_key)"
  warn "$degraded"
fi

# Services run as the login user, found at first boot.
for unit in gpulab-jupyter.service gpulab-run@.service; do
  mkdir -p "$GPULAB_SYSTEMD/$unit.d"
  write_atomic "$GPULAB_SYSTEMD/$unit.d/10-gpulab-user.conf" 0644 <<UNIT
[Service]
User=$GPULAB_USER
Group=$group
WorkingDirectory=$GPULAB_NOTEBOOK_DIR
UNIT
done
"$GPULAB_SYSTEMCTL" daemon-reload
"$GPULAB_SYSTEMCTL" restart --no-block gpulab-jupyter.service
port=${GPULAB_JUPYTER_PORT:-8888}
for ((i = 0; i < 90; i++)); do
  "$GPULAB_CURL" -fsS -o /dev/null "http://127.0.0.1:$port/api" 2>/dev/null && break
  sleep 2
done
((i < 90)) || die "Jupyter did not answer on 127.0.0.1:$port in 180 s: journalctl -u gpulab-jupyter"
log "Jupyter is up on 127.0.0.1:$port (token auth) serving $GPULAB_NOTEBOOK_DIR"

shopt -s nullglob
if [[ $GPULAB_RUN_ON_BOOT == true && ! -e $GPULAB_STATE/run-on-boot-started ]]; then
  run_id=boot-$(date -u +%Y%m%d-%H%M%S)
  date -u +%Y-%m-%dT%H:%M:%SZ >"$GPULAB_STATE/run-on-boot-started"
  "$GPULAB_SYSTEMCTL" start --no-block "gpulab-run@$run_id.service"
  log "runOnBoot: started run $run_id"
fi
for dir in "$GPULAB_RUNS"/*/; do
  run_id=$(basename "$dir")
  [[ -f $dir/.gpulab-run && ! -f $dir/metrics.json && ! -f $dir/FAILED ]] || continue
  "$GPULAB_SYSTEMCTL" start --no-block "gpulab-run@$run_id.service"
  log "resuming unfinished run $run_id"
done

[[ -z $degraded ]] || die "$degraded"
printf 'ready %s code %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(installed_code_key)" | write_atomic "$GPULAB_STATE/ready" 0644
log "READY: marker $GPULAB_STATE/ready written"
