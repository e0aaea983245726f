#!/bin/sh
# Fill a Triton model repository volume from this image's copy.
#
#   fill-model-repository DEST [--gpu]
#
# Copies /model-repository/* (MODEL_REPOSITORY_SOURCE overrides the source)
# into DEST, an emptyDir shared with the main container. With --gpu, every
# model's GPU configuration (config.gpu.pbtxt, or configs/gpu.pbtxt) replaces
# its config.pbtxt, so Triton serves the ONNX Runtime backend with TensorRT
# FP16 instead of the CPU configuration. Services that only read the feature
# manifest run it without --gpu.
set -eu

dest=${1:?usage: fill-model-repository DEST [--gpu]}
variant=${2:-}
source=${MODEL_REPOSITORY_SOURCE:-/model-repository}

cp -R "$source/." "$dest/"
if [ "$variant" = "--gpu" ]; then
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
