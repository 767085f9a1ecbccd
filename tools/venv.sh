#!/usr/bin/env bash
# Builds the project's virtual environments (called by the Makefile; see README "Tested versions").
#
#   tools/venv.sh lock   VENV   exactly requirements/lock.txt + the project (editable); extra packages removed;
#                               fails unless `pip freeze` of the venv equals the lock
#   tools/venv.sh floor  VENV   the lock, then requirements/floor.txt (the ranges' floors) over it
#   tools/venv.sh latest VENV   a new venv with the newest versions pyproject.toml's ranges allow (no lock)
#   tools/venv.sh vllm   VENV   exactly requirements/vllm-lock.txt (vLLM's CPU build) and the project, editable and
#                               without dependencies (its vLLM plugin is an entry point), plus the torchvision shim
#                               (tools/torchvision_cpu_shim.py); fails unless `pip freeze` equals that lock
#   tools/venv.sh freeze VENV   print VENV's packages in the lock's format (the lock's header included)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: tools/venv.sh lock|floor|latest|vllm|freeze VENV}
venv=${2:?usage: tools/venv.sh lock|floor|latest|vllm|freeze VENV}
PYTHON=${PYTHON:-python3}
LOCK=requirements/lock.txt
[ "$mode" = vllm ] && LOCK=requirements/vllm-lock.txt
FLOOR=requirements/floor.txt
pip() { "$venv/bin/python" -m pip "$@"; }
frozen() { pip freeze --all --exclude-editable | LC_ALL=C sort -f; }
locked() { grep -v -e '^#' -e '^$' "$LOCK" | LC_ALL=C sort -f; }

new_venv() {
  [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"
}

install_lock() {
  new_venv
  pip install -q --no-deps "$(grep -E '^pip==' "$LOCK")"
  pip install -q --no-deps -r "$LOCK"
  # packages a previous install left that the lock does not name
  extra=$(grep -vxF -f <(locked | sed -E 's/ ?(==| @ ).*//') <(frozen | sed -E 's/ ?(==| @ ).*//') || true)
  [ -z "$extra" ] || pip uninstall -q -y $extra
  if [ "$mode" = vllm ]; then
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    cp tools/torchvision_cpu_shim.py "$site/_holitom_torchvision_cpu_shim.py"
    echo "import _holitom_torchvision_cpu_shim" > "$site/_holitom_torchvision_cpu_shim.pth"
  fi
  pip install -q --no-deps --no-build-isolation -e .
  rm -rf lmms_holitom.egg-info
}

check_lock() {
  if ! diff <(frozen) <(locked) >/dev/null; then
    echo "tools/venv.sh: $venv does not match $LOCK (< venv, > lock):" >&2
    diff <(frozen) <(locked) >&2 || true
    exit 1
  fi
}

case "$mode" in
  lock|vllm)
    install_lock
    check_lock
    ;;
  floor)
    install_lock
    pip install -q -r "$FLOOR"
    echo "tools/venv.sh: $venv = the lock with the floors of $FLOOR; differences (< venv, > lock):"
    diff <(frozen) <(locked) || true
    ;;
  latest)
    rm -rf "$venv"
    new_venv
    pip install -q --upgrade pip setuptools wheel
    pip install -q --upgrade --upgrade-strategy eager -e ".[dev]"
    rm -rf lmms_holitom.egg-info  # the isolated build leaves it in the checkout, where it would go stale
    echo "tools/venv.sh: $venv holds the newest allowed versions; differences from the lock (< venv, > lock):"
    diff <(frozen) <(locked) || true
    ;;
  freeze)
    cat <<HEADER
# The locked environment of lmms-holitom: every package of the venv that \`make venv\` builds (the project
# itself, installed editable, aside). For x86-64 Linux and CPython 3.11: torch is PyPI's CUDA build (it runs on
# CPU too), decord has x86-64 wheels only. Other platforms: pip install -e ".[dev]" (ranges in pyproject.toml).
# Refresh with \`make lock\` (the newest versions pyproject.toml's ranges allow under this machine's pip
# constraints), then run \`make test\`; tested versions and results are in the README.
# Generated $(date -u +%Y-%m-%d) by \`make lock\`.
HEADER
    frozen
    ;;
  *)
    echo "tools/venv.sh: unknown mode $mode (lock, floor, latest, vllm, freeze)" >&2
    exit 2
    ;;
esac
