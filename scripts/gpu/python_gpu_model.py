"""Triton Python-backend model running cxr_fusion with onnxruntime-gpu.

The GPU benchmark's fallback for a machine without a tritonserver that has the
onnxruntime backend: the nvidia-pytriton wheel's server runs this file in its
Python backend, and onnxruntime-gpu runs ``model.onnx`` on the GPU. It is
copied in place of ``1/model.py`` in a staged copy of the repository by
``run_gpu_bench.sh``; the shipped model is never changed.

- reads: config parameter ``providers`` (comma-separated, in order of
  preference: ``tensorrt``, ``cuda``, ``cpu``), ``trt_cache`` (a folder for
  TensorRT engines) and ``max_batch`` (the engine's largest batch);
- executes: every request of a dynamic batch concatenated into one run, the
  outputs split back per request; TensorRT in FP16 when it is available;
- on error: each request of the failed batch gets a Triton error response.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

logger = logging.getLogger(__name__)

INPUT_NAMES = ("image", "clinical", "clinical_mask")


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return str(value) if value else default


def _providers(config: dict[str, Any]) -> list[Any]:
    """Execution providers to ask for, best first, with their options."""
    wanted = _parameter(config, "providers", "tensorrt,cuda,cpu").split(",")
    cache = _parameter(config, "trt_cache", "trt-cache")
    top = int(_parameter(config, "max_batch", "32"))
    shapes = {
        "min": "image:1x1x224x224,clinical:1x12,clinical_mask:1x12",
        "opt": "image:8x1x224x224,clinical:8x12,clinical_mask:8x12",
        "max": f"image:{top}x1x224x224,clinical:{top}x12,clinical_mask:{top}x12",
    }
    named = {
        "tensorrt": (
            "TensorrtExecutionProvider",
            {
                "trt_fp16_enable": True,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": cache,
                "trt_profile_min_shapes": shapes["min"],
                "trt_profile_opt_shapes": shapes["opt"],
                "trt_profile_max_shapes": shapes["max"],
            },
        ),
        "cuda": ("CUDAExecutionProvider", {}),
        "cpu": ("CPUExecutionProvider", {}),
    }
    available = set(ort.get_available_providers())
    return [named[w.strip()] for w in wanted if named[w.strip()][0] in available]


class TritonPythonModel:
    """Triton's entry points: initialize, execute, finalize."""

    def initialize(self, args: dict[str, str]) -> None:
        """Opens the session on the best provider this machine has."""
        config = json.loads(args["model_config"])
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(
            str(path), providers=_providers(config) or ["CPUExecutionProvider"]
        )
        self.output_names = [output["name"] for output in config["output"]]
        logger.warning(
            "cxr_fusion (python-gpu) providers=%s onnxruntime=%s",
            self.session.get_providers(),
            ort.__version__,
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        """Scores every request of the batch in one run."""
        feeds = {
            name: [pb_utils.get_input_tensor_by_name(r, name).as_numpy()
                   for r in requests]
            for name in INPUT_NAMES
        }  # fmt: skip
        sizes = [len(array) for array in feeds["image"]]
        try:
            outputs = self.session.run(
                self.output_names,
                {name: np.concatenate(arrays) for name, arrays in feeds.items()},
            )
        except Exception as exc:  # noqa: BLE001 - every request gets the error
            error = pb_utils.TritonError(f"cxr_fusion inference failed: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        bounds = np.cumsum([0, *sizes])
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(name, np.ascontiguousarray(out[start:stop]))
                    for name, out in zip(self.output_names, outputs, strict=True)
                ]
            )
            for start, stop in itertools.pairwise(bounds)
        ]

    def finalize(self) -> None:
        """Releases the session."""
        self.session = None
