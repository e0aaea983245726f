#!/usr/bin/env bash
# Benchmarks cxr_fusion served by Triton on a GPU, unattended, in under 8 min.
#
# Usage: scripts/gpu/run_gpu_bench.sh [--mode auto|onnxruntime|python-gpu]
#            [--wheels DIR] [--venv DIR] [--out DIR] [--seconds N]
#
# Modes (CXRWATCH_TRITON_CONFIG=gpu is what both serve):
#   onnxruntime  the production path: a tritonserver with the onnxruntime
#                backend (the NGC image nvcr.io/nvidia/tritonserver:<rel>-py3,
#                or a server built with that backend) on PATH; the repository
#                is staged with config.gpu.pbtxt copied over config.pbtxt
#                (ONNX Runtime + TensorRT FP16, dynamic batching, 2 instances),
#                as the deploy's init step does with CXRWATCH_TRITON_CONFIG=gpu.
#   python-gpu   the fallback when no such server exists: the nvidia-pytriton
#                wheel's tritonserver (Python backend only) runs the shipped
#                adapter (models/cxr_fusion/1/model.py) with its `providers`
#                parameter set to tensorrt,cuda,cpu: onnxruntime-gpu on
#                TensorRT (FP16) if its libraries are there, else CUDA, else
#                CPU; the providers it got are in triton.log.
#   auto         onnxruntime when `tritonserver` is on PATH and its
#                backends/onnxruntime exists, else python-gpu.
#
# Installs (into --venv, default OUT/venv) from --wheels DIR with
# `pip --no-index` when given (the GPU machine may have no index), else from
# the index: tritonclient[grpc] and numpy<2 for the load generator, plus
# nvidia-pytriton and onnxruntime-gpu (and any tensorrt* wheels in DIR) for
# python-gpu. Prepare DIR elsewhere with:
#   pip download -d wheels 'tritonclient[grpc]==2.73.0' 'numpy<2' \
#       nvidia-pytriton==0.7.0 onnxruntime-gpu==1.31.1 --python-version 3.11 \
#       --only-binary=:all: --platform manylinux2014_x86_64
#
# Writes to OUT (--out, else $OUT, else .run/gpu-bench): gpu_bench.csv (one
# row per transport x batch x concurrency: images/s, requests/s, p50/p99 ms,
# Triton's mean executed batch), triton.log, nvidia-smi.txt, gpu-util.csv, and
# perf_analyzer_*.csv when perf_analyzer is on PATH (pip's tritonclient does
# not ship it; the NGC SDK image does).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
mode=auto
wheels=""
venv=""
out="${OUT:-$root/.run/gpu-bench}"
seconds=8
budget="${BENCH_BUDGET_S:-460}"
started=$SECONDS

while (($#)); do
  case "$1" in
    --mode) mode="$2"; shift 2 ;;
    --wheels) wheels="$(cd "$2" && pwd)"; shift 2 ;;
    --venv) venv="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    *) echo "run_gpu_bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
mkdir -p "$out"
out="$(cd "$out" && pwd)"
venv="${venv:-$out/venv}"
log() { echo "[$((SECONDS - started))s] $*"; }

if [[ "$mode" == auto ]]; then
  server_bin="$(command -v tritonserver || true)"
  if [[ -n "$server_bin" ]] && [[ -d "$(dirname "$server_bin")/../backends/onnxruntime" \
      || -d /opt/tritonserver/backends/onnxruntime ]]; then
    mode=onnxruntime
  else
    mode=python-gpu
  fi
fi
log "mode $mode, output $out"

# ---- install ---------------------------------------------------------------
packages=("tritonclient[grpc]==2.73.0" "numpy<2")
if [[ "$mode" == python-gpu ]]; then
  packages+=("nvidia-pytriton==0.7.0" "onnxruntime-gpu")
  if [[ -n "$wheels" ]] && compgen -G "$wheels/tensorrt*" >/dev/null; then
    packages+=(tensorrt)
  fi
fi
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
fi
if [[ -n "$wheels" ]]; then
  "$venv/bin/pip" install -q --no-index --find-links "$wheels" "${packages[@]}"
elif [[ "$venv" == "$out/venv" ]]; then
  "$venv/bin/pip" install -q "${packages[@]}"
else
  log "using the venv at $venv as it is"
fi
log "installed"

# ---- stage the model repository (never the shipped one) --------------------
stage="$out/models"
rm -rf "$stage"
mkdir -p "$stage/cxr_fusion/1" "$out/trt-cache"
source_model="$root/models/cxr_fusion"
cp "$source_model/features.json" "$stage/cxr_fusion/"
cp "$source_model/1/model.onnx" "$stage/cxr_fusion/1/"
if [[ "$mode" == onnxruntime ]]; then
  # CXRWATCH_TRITON_CONFIG=gpu: the GPU config replaces config.pbtxt.
  sed "s#/tmp/cxr_fusion_trt#$out/trt-cache#" "$source_model/config.gpu.pbtxt" \
    >"$stage/cxr_fusion/config.pbtxt"
else
  cp "$source_model/1/model.py" "$stage/cxr_fusion/1/model.py"
  {
    cat "$source_model/config.pbtxt"
    echo 'parameters: { key: "providers" value: { string_value: "tensorrt,cuda,cpu" } }'
    echo "parameters: { key: \"trt_cache\" value: { string_value: \"$out/trt-cache\" } }"
    echo 'parameters: { key: "max_batch" value: { string_value: "32" } }'
  } >"$stage/cxr_fusion/config.pbtxt"
fi

# ---- start Triton ------------------------------------------------------------
http=18000 grpc=18001 metrics=18002
if [[ "$mode" == onnxruntime ]]; then
  setsid tritonserver --model-repository="$stage" --model-control-mode=none \
    --strict-readiness=true --exit-on-error=true \
    --http-port=$http --grpc-port=$grpc --metrics-port=$metrics \
    >"$out/triton.log" 2>&1 &
else
  TRITON_VENV="$venv" TRITON_BACKENDS="$out/backends" setsid bash \
    "$root/scripts/triton/start_triton.sh" "$stage" $http $grpc $metrics \
    >"$out/triton.log" 2>&1 &
fi
server=$!
monitor=""
cleanup() {
  [[ -n "$monitor" ]] && kill "$monitor" 2>/dev/null || true
  kill -TERM -- "-$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
}
trap cleanup EXIT

ready_timeout=300  # the first start builds the TensorRT engines
until "$venv/bin/python" - "$http" <<'PY'
import sys
import urllib.request

try:
    url = f"http://127.0.0.1:{sys.argv[1]}/v2/health/ready"
    with urllib.request.urlopen(url, timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)
PY
do
  if ! kill -0 "$server" 2>/dev/null; then
    log "tritonserver exited; last lines of $out/triton.log:"
    tail -30 "$out/triton.log"
    exit 1
  fi
  if ((SECONDS - started > ready_timeout)); then
    log "Triton not ready after ${ready_timeout}s; see $out/triton.log"
    exit 1
  fi
  sleep 2
done
log "Triton ready"
grep "providers=" "$out/triton.log" || true

if command -v nvidia-smi >/dev/null; then
  nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || true
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 \
    >"$out/gpu-util.csv" 2>/dev/null &
  monitor=$!
fi

# ---- the sweep ---------------------------------------------------------------
left=$((budget - (SECONDS - started)))
log "sweep with ${left}s left"
timeout "$left" "$venv/bin/python" "$root/scripts/gpu/load_generator.py" \
  --url "127.0.0.1:$grpc" --metrics-url "http://127.0.0.1:$metrics/metrics" \
  --batches 1,8,32 --concurrency 1,4,16 --transports wire,shm \
  --seconds "$seconds" --csv "$out/gpu_bench.csv" || log "sweep cut short ($?)"

if command -v perf_analyzer >/dev/null; then
  left=$((budget - (SECONDS - started)))
  for batch in 8 32; do
    if ((left > 40)); then
      timeout 35 perf_analyzer -m cxr_fusion -u "127.0.0.1:$grpc" -i grpc \
        -b "$batch" --concurrency-range 1:16:4 --shared-memory system \
        --measurement-interval 3000 -f "$out/perf_analyzer_b$batch.csv" \
        >"$out/perf_analyzer_b$batch.log" 2>&1 || true
      left=$((budget - (SECONDS - started)))
    fi
  done
fi
log "done; $out/gpu_bench.csv:"
cat "$out/gpu_bench.csv"
