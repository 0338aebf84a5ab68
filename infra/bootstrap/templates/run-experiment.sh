#!/usr/bin/env bash
# gpulab-run@<run-id>.service's command: the full experiment (train, evaluate, benchmark, plots) in
# $GPULAB_RUNS/<run-id>, synced to s3://<bucket>/runs/<run-id>/ every minute and at the end.
# A run with checkpoint.pt and no metrics.json (written last) resumes from the checkpoint.
set -euo pipefail
# shellcheck source=/dev/null
. "${GPULAB_LIB:-/opt/gpulab/lib/common.sh}" gpulab-run
load_env
run_id=${1:-}
[[ $run_id =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$ ]] || die "run id '$run_id': use letters, digits, . _ -"
need_setup
dir=$GPULAB_RUNS/$run_id
target=s3://$GPULAB_BUCKET/runs/$run_id/
sync_every=${GPULAB_SYNC_SECONDS:-60}
mkdir -p "$dir"

sync_run() { "$GPULAB_AWS" s3 sync "$dir" "$target" --region "$GPULAB_REGION" --only-show-errors || warn "sync to $target failed; will retry"; }

if [[ -f $dir/metrics.json ]]; then
  log "run $run_id is already complete (metrics.json present); syncing once"
  sync_run
  exit 0
fi

args=(-m experiment all --config "$GPULAB_ETC/experiment.json" --output-dir "$dir")
if [[ -f $dir/checkpoint.pt ]]; then
  args+=(--resume)
  log "resuming run $run_id from $dir/checkpoint.pt"
else
  log "starting run $run_id in $dir"
fi
date -u +%Y-%m-%dT%H:%M:%SZ >>"$dir/.gpulab-run"

(
  trap 'kill "$nap" 2>/dev/null; exit 0' TERM
  while :; do
    sleep "$sync_every" &
    nap=$!
    wait "$nap"
    sync_run
  done
) &
syncer=$!
child=""
on_term() {
  log "stopping; syncing (resumes at next boot)"
  if [[ -n $child ]]; then
    kill -TERM "$child" 2>/dev/null || true
    wait "$child" || true
  fi
  kill "$syncer" 2>/dev/null || true
  sync_run
  exit 143
}
trap on_term TERM INT

PYTHONUNBUFFERED=1 "$GPULAB_PYTHON" "${args[@]}" > >(tee -a "$dir/experiment.log") 2>&1 &
child=$!
status=0
wait "$child" || status=$?
trap - TERM INT
kill "$syncer" 2>/dev/null || true
if ((status != 0)); then
  echo "exit status $status at $(date -u +%Y-%m-%dT%H:%M:%SZ); see experiment.log" >"$dir/FAILED"
  sync_run
  die "run $run_id failed (exit $status), see $dir/experiment.log; not resumed at boot"
fi
sync_run
log "run $run_id finished; results in $target"
