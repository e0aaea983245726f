#!/usr/bin/env bash
# Assembles a Triton backend directory from the nvidia-pytriton wheel.
#
# The wheel's tritonserver has only the Python backend, and ships the backend
# (backends/python) apart from its per-Python-version stub
# (python_backend_stubs/X.Y/triton_python_backend_stub). Triton looks for the
# stub beside libtriton_python.so, so both are copied into one folder:
#
#   <dest>/python/libtriton_python.so
#   <dest>/python/triton_python_backend_utils.py
#   <dest>/python/triton_python_backend_stub   (for the venv's Python X.Y)
#
# Usage: scripts/triton/prepare_backends.sh [dest]
#   dest          default: <repo>/.cache/triton-backends (git-ignored)
#   TRITON_VENV   the venv holding nvidia-pytriton; default <repo>/.venv-triton
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${TRITON_VENV:-$root/.venv-triton}"
dest="${1:-$root/.cache/triton-backends}"
python="$venv/bin/python"

if [[ ! -x "$python" ]]; then
  echo "prepare_backends: no Python at $python; create the venv first:" >&2
  echo "  python3 -m venv $venv && $venv/bin/pip install" \
    "nvidia-pytriton==0.7.0 onnxruntime==1.32.0" >&2
  exit 2
fi

read -r server_dir py_version < <("$python" - <<'PY'
import pathlib
import sys

import pytriton

server = pathlib.Path(pytriton.__file__).resolve().parent / "tritonserver"
print(server, f"{sys.version_info.major}.{sys.version_info.minor}")
PY
)

stub="$server_dir/python_backend_stubs/$py_version/triton_python_backend_stub"
if [[ ! -f "$stub" ]]; then
  echo "prepare_backends: the wheel has no stub for Python $py_version" \
    "($stub)" >&2
  exit 2
fi

# Install each file only when it differs, and by rename: a tritonserver that
# is running from this folder keeps its mapped copy intact.
install() {
  local source="$1" target="$2"
  if ! cmp -s "$source" "$target"; then
    cp "$source" "$target.tmp.$$"
    chmod "$3" "$target.tmp.$$"
    mv -f "$target.tmp.$$" "$target"
  fi
}

mkdir -p "$dest/python"
install "$server_dir/backends/python/libtriton_python.so" \
  "$dest/python/libtriton_python.so" 755
install "$server_dir/backends/python/triton_python_backend_utils.py" \
  "$dest/python/triton_python_backend_utils.py" 644
install "$stub" "$dest/python/triton_python_backend_stub" 755
echo "$dest"
