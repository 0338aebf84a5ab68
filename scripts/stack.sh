#!/usr/bin/env bash
# `make preview|up|destroy`: run Pulumi for one stack, safely.
# - Validates Pulumi.<stack>.yaml offline first, so a bad value never reaches AWS.
# - Uses Pulumi Cloud when you are logged in, else a local state folder (.pulumi-state/, git-ignored).
# - With local state, secrets are encrypted with a passphrase: PULUMI_CONFIG_PASSPHRASE or
#   PULUMI_CONFIG_PASSPHRASE_FILE when you set one, else .gpulab/passphrase (asked once, or generated).
# - Generates the Jupyter token on the first `up`, piped to Pulumi so it never shows in argv or logs.
set -euo pipefail

action=${1:-}
stack=${STACK:-dev}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

die() { echo "gpulab: $*" >&2; exit 1; }

case $action in
  preview|up|destroy) ;;
  *) die "usage: scripts/stack.sh preview|up|destroy (STACK=$stack)" ;;
esac
command -v pulumi >/dev/null 2>&1 \
  || die "the Pulumi CLI is not installed. Fix: see https://www.pulumi.com/docs/install/ (then run make $action again)"
[[ -f Pulumi.$stack.yaml ]] || die "there is no Pulumi.$stack.yaml. Fix: copy Pulumi.dev.yaml to Pulumi.$stack.yaml, or run with STACK=dev"

# The deploy venv Pulumi itself uses (Pulumi.yaml: virtualenv: venv). It holds no torch.
if [[ ! -x venv/bin/python ]]; then
  echo "gpulab: creating the deploy venv in ./venv (pulumi, pulumi-aws, pydantic, pyyaml)"
  python3 -m venv venv
  venv/bin/python -m pip install -q -r requirements.txt
fi
venv/bin/python -m config validate "Pulumi.$stack.yaml"

if [[ -z ${PULUMI_BACKEND_URL:-} ]] && ! pulumi whoami >/dev/null 2>&1; then
  mkdir -p .pulumi-state
  export PULUMI_BACKEND_URL="file://$root/.pulumi-state"
  echo "gpulab: not logged in to Pulumi Cloud; keeping state in $root/.pulumi-state (git-ignored)"
fi

if [[ ${PULUMI_BACKEND_URL:-} == file://* && -z ${PULUMI_CONFIG_PASSPHRASE+set} && -z ${PULUMI_CONFIG_PASSPHRASE_FILE:-} ]]; then
  passfile="$root/.gpulab/passphrase"
  if [[ ! -s $passfile ]]; then
    mkdir -p "$root/.gpulab"
    chmod 700 "$root/.gpulab"
    if [[ -t 0 ]]; then
      read -r -s -p "Choose a passphrase for this stack's secrets (empty: generate one): " pass
      echo
    else
      pass=
    fi
    [[ -n $pass ]] || pass=$(venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(24))')
    (umask 077 && printf '%s\n' "$pass" >"$passfile")
    unset pass
    echo "gpulab: saved the secrets passphrase to $passfile (mode 600, git-ignored)."
    echo "        Back it up: without it Pulumi cannot decrypt gpulab:jupyterToken or destroy cleanly."
  fi
  export PULUMI_CONFIG_PASSPHRASE_FILE=$passfile
fi

pulumi stack select --create "$stack" >/dev/null

if [[ $action == up ]] && ! pulumi config get gpulab:jupyterToken >/dev/null 2>&1; then
  venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))' \
    | pulumi config set --secret gpulab:jupyterToken
  echo "gpulab: generated a Jupyter token (encrypted in Pulumi.$stack.yaml; \`pulumi stack output jupyterUrl --show-secrets\` shows the URL)"
fi

case $action in
  preview) pulumi preview --stack "$stack" ;;
  up) pulumi up --stack "$stack" ;;
  destroy)
    # Read the bucket's name first: a destroyed stack has no outputs left to ask.
    bucket=$(pulumi stack output artifactsBucket --stack "$stack" 2>/dev/null || true)
    pulumi destroy --stack "$stack"
    bash scripts/destroy-notice.sh "$stack" "$bucket"
    ;;
esac
