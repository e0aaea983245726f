#!/bin/sh
# Fill a Triton model repository volume from this image's copy.
#
#   CXRWATCH_TRITON_CONFIG=cpu|gpu fill-model-repository DEST
#   fill-model-repository DEST [--gpu]       (the same as gpu)
#
# Copies /model-repository/* (MODEL_REPOSITORY_SOURCE overrides the source)
# into DEST, an emptyDir shared with the main container. The one variable
# CXRWATCH_TRITON_CONFIG chooses the configuration Triton serves: cpu (the
# default) leaves config.pbtxt, the CPU configuration of the embedded
# default; gpu puts every model's GPU configuration (config.gpu.pbtxt, or
# configs/gpu.pbtxt) in its place, so Triton serves the ONNX Runtime backend
# with TensorRT FP16. Services that only read the feature manifest keep cpu.
set -eu

dest=${1:?usage: CXRWATCH_TRITON_CONFIG=cpu|gpu fill-model-repository DEST}
variant=${2:-${CXRWATCH_TRITON_CONFIG:-cpu}}
source=${MODEL_REPOSITORY_SOURCE:-/model-repository}

case "$variant" in
  cpu | --cpu) variant=cpu ;;
  gpu | --gpu) variant=gpu ;;
  *)
    echo "CXRWATCH_TRITON_CONFIG=$variant: use cpu or gpu" >&2
    exit 2
    ;;
esac

cp -R "$source/." "$dest/"
if [ "$variant" = gpu ]; then
  found=0
  for model in "$dest"/*/; do
    for gpu_config in "$model/config.gpu.pbtxt" "$model/configs/gpu.pbtxt"; do
      if [ -f "$gpu_config" ]; then
        cp "$gpu_config" "$model/config.pbtxt"
        found=1
        break
      fi
    done
  done
  if [ "$found" -eq 0 ]; then
    echo "no config.gpu.pbtxt (or configs/gpu.pbtxt) under $dest:" \
      "the GPU configuration is missing" >&2
    exit 1
  fi
fi
echo "model repository filled in $dest ($(ls "$dest" | tr '\n' ' '))"
