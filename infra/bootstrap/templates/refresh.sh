#!/usr/bin/env bash
# gpulab refresh: install the code archive the SSM code parameter names, if it is not the installed one.
# Applies new code to a running instance (`sudo /opt/gpulab/bin/refresh`, e.g. through `aws ssm
# send-command`); gpulab-boot runs it on every boot. Never touches runs, notebooks you edited, or torch.
#   --no-restart  leave Jupyter alone (gpulab-boot restarts it itself)
set -euo pipefail
# shellcheck source=/dev/null
. "${GPULAB_LIB:-/opt/gpulab/lib/common.sh}" gpulab-refresh
load_env
[[ ${1:---no-restart} == --no-restart ]] || die "unknown option '$1'. Usage: refresh [--no-restart]"
need_setup

own() { if ((EUID == 0)); then chown "$GPULAB_USER:$(id -gn "$GPULAB_USER")" "$@"; fi; }

# Pins for everything the AMI's CUDA build of torch depends on, so pip can never replace or downgrade it.
write_constraints() {
  "$GPULAB_PYTHON" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null |
    grep -Ei '^(torch|torchvision|torchaudio|triton|numpy|nvidia-[a-z0-9-]+)==' >"$1" || true
  grep -qi '^torch==' "$1" || die "no torch in $GPULAB_PYTHON to pin"
}

# Copy the package's notebooks into the notebook directory. A notebook you edited is never
# overwritten: the new version lands beside it as <name>.new.ipynb.
install_notebooks() {
  local src dst name shipped=$GPULAB_STATE/shipped-notebooks
  # From / so that a folder named experiment/ in the working directory cannot shadow the installed package.
  src=$(cd / && "$GPULAB_PYTHON" -c 'import importlib.util, pathlib; print(pathlib.Path(importlib.util.find_spec("experiment").origin).parent / "notebooks")' 2>/dev/null) || src=""
  if [[ -z $src || ! -d $src ]]; then
    warn "the package has no experiment/notebooks"
    return 0
  fi
  mkdir -p "$shipped"
  shopt -s nullglob
  for nb in "$src"/*.ipynb; do
    name=${nb##*/}
    dst=$GPULAB_NOTEBOOK_DIR/$name
    if [[ ! -e $dst ]] || cmp -s "$dst" "$shipped/$name"; then
      cp "$nb" "$dst"
    elif ! cmp -s "$nb" "$dst"; then
      dst=$GPULAB_NOTEBOOK_DIR/${name%.ipynb}.new.ipynb
      cp "$nb" "$dst"
      warn "kept your edited $name; the new one is $dst"
    fi
    own "$dst"
    cp "$nb" "$shipped/$name"
    log "notebook $name -> $GPULAB_NOTEBOOK_DIR"
  done
}

key=$(current_code_key)
installed=$(installed_code_key)
if [[ $key == "$installed" ]]; then
  log "code is up to date ($key)"
  exit 0
fi
log "installing $key (installed: ${installed:-nothing}) into $GPULAB_PYTHON"

sha=${key#code/gpulab-}
sha=${sha%.tar.gz}
incoming=$(mktemp -d "$GPULAB_OPT/code/.incoming.XXXXXX")
trap 'rm -rf "$incoming"' EXIT
retry 5 "$GPULAB_AWS" s3 cp "s3://$GPULAB_BUCKET/$key" "$incoming/code.tar.gz" --region "$GPULAB_REGION" --only-show-errors ||
  die "cannot download s3://$GPULAB_BUCKET/$key"
actual=$(sha256sum "$incoming/code.tar.gz" | cut -c1-16)
[[ $actual == "$sha" ]] || die "$key has sha256 $actual...: corrupt or replaced object"
tar -xzf "$incoming/code.tar.gz" -C "$incoming" --no-same-owner
[[ -f $incoming/gpulab/pyproject.toml && -f $incoming/gpulab/bin/run-experiment ]] ||
  die "$key lacks gpulab/pyproject.toml or gpulab/bin/run-experiment"
rm -rf "${GPULAB_OPT:?}/code/$sha"
mv "$incoming/gpulab" "$GPULAB_OPT/code/$sha"

constraints=$GPULAB_STATE/constraints.txt
write_constraints "$constraints"
torch_before=$(grep -i '^torch==' "$constraints")
extras=()
"$GPULAB_PYTHON" -c 'import jupyterlab, ipykernel' >/dev/null 2>&1 || extras=(jupyterlab ipykernel)
log "pip install (constraints: $(tr '\n' ' ' <"$constraints"))"
PIP_ROOT_USER_ACTION=ignore "$GPULAB_PYTHON" -m pip install --no-input --disable-pip-version-check \
  --constraint "$constraints" "$GPULAB_OPT/code/$sha" "${extras[@]}" ||
  die "pip could not install $key; ${installed:-nothing} stays installed"
torch_after=$("$GPULAB_PYTHON" -m pip list --format=freeze --disable-pip-version-check 2>/dev/null | grep -i '^torch==' || true)
[[ $torch_after == "$torch_before" ]] || die "torch changed from $torch_before to ${torch_after:-nothing} during install"

# The run script travels with the package it runs (keeps user_data small, updates with the code).
write_atomic "$GPULAB_OPT/bin/run-experiment" 0755 <"$GPULAB_OPT/code/$sha/bin/run-experiment"
printf '%s\n' "$key" | write_atomic "$GPULAB_STATE/installed-code-key" 0644
# Keep only the installed version's source; runs and notebooks live elsewhere and are never touched.
for old in "$GPULAB_OPT"/code/*/; do
  [[ ${old%/} == "$GPULAB_OPT/code/$sha" ]] || rm -rf "$old"
done
install_notebooks
log "installed $key ($torch_before kept)"

if [[ -z ${1:-} ]]; then
  "$GPULAB_SYSTEMCTL" try-restart gpulab-jupyter.service
  log "Jupyter restarted with the new code (kernels too)"
fi
