#!/usr/bin/env bash
# Starts the nvidia-pytriton wheel's tritonserver on the CPU, on loopback.
#
# Usage: scripts/triton/start_triton.sh [repo] [http_port] [grpc_port] [metrics_port]
#   repo           model repository; default <repo>/models
#   ports          default 8000 8001 8002
# Environment:
#   TRITON_VENV          venv with nvidia-pytriton and onnxruntime
#                        (default <repo>/.venv-triton)
#   TRITON_BACKENDS      backend directory (default <repo>/.cache/triton-backends,
#                        kept up to date by prepare_backends.sh at each start)
#   TRITON_HOST          address to bind (default 127.0.0.1)
#   TRITON_MODELS        models to load, space-separated (default cxr_fusion)
#   TRITON_LOG_VERBOSE   --log-verbose level (default 0)
#   TRITON_SHM_PREFIX    prefix of the Python backend's /dev/shm regions
#                        (default cxrwatch_<grpc_port>_)
#
# The Python backend's stub is an embedded CPython: it finds numpy and
# onnxruntime through PYTHONPATH (the venv's site-packages), libpython through
# LD_LIBRARY_PATH (the venv's base interpreter), and the server's bundled
# libraries through LD_LIBRARY_PATH (nvidia_pytriton.libs).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
repo="$(cd "${1:-$root/models}" && pwd)"
http_port="${2:-8000}"
grpc_port="${3:-8001}"
metrics_port="${4:-8002}"
venv="${TRITON_VENV:-$root/.venv-triton}"
backends="${TRITON_BACKENDS:-$root/.cache/triton-backends}"
host="${TRITON_HOST:-127.0.0.1}"
models="${TRITON_MODELS:-cxr_fusion}"
shm_prefix="${TRITON_SHM_PREFIX:-cxrwatch_${grpc_port}_}"
python="$venv/bin/python"

if [[ ! -x "$python" ]]; then
  echo "start_triton: no Python at $python; set TRITON_VENV or create it:" >&2
  echo "  python3 -m venv $venv && $venv/bin/pip install" \
    "nvidia-pytriton==0.7.0 onnxruntime==1.32.0" >&2
  exit 2
fi
# Cheap when nothing changed; refreshes the copy after a wheel upgrade.
TRITON_VENV="$venv" "$root/scripts/triton/prepare_backends.sh" "$backends" >/dev/null

read -r server_dir libs_dir site_dir base_libdir < <("$python" - <<'PY'
import pathlib
import sysconfig

import pytriton

package = pathlib.Path(pytriton.__file__).resolve().parent
print(
    package / "tritonserver",
    package.parent / "nvidia_pytriton.libs",
    sysconfig.get_paths()["purelib"],
    sysconfig.get_config_var("LIBDIR"),
)
PY
)

export LD_LIBRARY_PATH="$libs_dir:$base_libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$site_dir${PYTHONPATH:+:$PYTHONPATH}"
export PATH="$venv/bin:$PATH"

load_args=()
for model in $models; do
  load_args+=("--load-model=$model")
done

exec "$server_dir/bin/tritonserver" \
  --model-repository="$repo" \
  --backend-directory="$backends" \
  --model-control-mode=explicit "${load_args[@]}" \
  --disable-auto-complete-config \
  --exit-on-error=true \
  --http-address="$host" --http-port="$http_port" \
  --grpc-address="$host" --grpc-port="$grpc_port" \
  --metrics-address="$host" --metrics-port="$metrics_port" \
  --allow-gpu-metrics=false \
  --metrics-config=summary_latencies=true \
  --metrics-config=summary_quantiles=0.5:0.05,0.9:0.01,0.99:0.001 \
  --pinned-memory-pool-byte-size=0 \
  --backend-config="python,shm-region-prefix-name=${shm_prefix}" \
  --backend-config="python,shm-default-byte-size=16777216" \
  --log-verbose="${TRITON_LOG_VERBOSE:-0}"
