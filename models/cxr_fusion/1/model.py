"""Triton Python-backend model that serves ``model.onnx`` with onnxruntime.

The Triton server shipped in the ``nvidia-pytriton`` wheel has only the Python
backend, so the embedded CPU deployment runs the same ONNX file that the
production GPU config (``../config.gpu.pbtxt``) serves with Triton's own ONNX
Runtime backend. This file must stay a thin adapter: no preprocessing, no
normalisation; the services send model-ready tensors.

- reads: model config parameters ``intra_op_threads`` (0 = onnxruntime's
  default), ``allow_spinning`` ("1", onnxruntime's default, or "0"),
  ``providers`` (comma-separated, best first, of ``tensorrt``, ``cuda``,
  ``cpu``; default ``cpu``: what this onnxruntime build lacks is skipped),
  ``trt_cache`` (a folder for TensorRT engines) and ``max_batch`` (TensorRT's
  largest batch), and the ONNX file beside this one. The GPU benchmark's
  fallback mode (scripts/gpu/run_gpu_bench.sh) runs this same file under
  onnxruntime-gpu with ``providers`` "tensorrt,cuda,cpu";
- executes: every request of a dynamic batch is concatenated into one
  onnxruntime call, then the outputs are split back per request;
- on error: each request of the failed batch gets a Triton error response.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

INPUT_NAMES = ("image", "clinical", "clinical_mask")
ORT_ERRORS = (
    ort_errors.Fail,
    ort_errors.InvalidArgument,
    ort_errors.RuntimeException,
    ValueError,
)


class TritonPythonModel:
    """Triton's entry points: initialize, execute, finalize."""

    def initialize(self, args: dict[str, str]) -> None:
        """Opens the onnxruntime session for this model instance."""
        config = json.loads(args["model_config"])
        threads = int(_parameter(config, "intra_op_threads", "0"))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        spinning = _parameter(config, "allow_spinning", "1")
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        model_path = Path(args["model_repository"]) / args["model_version"]
        model_path = model_path / "model.onnx"
        self.session = ort.InferenceSession(
            str(model_path), options, providers=_providers(config)
        )
        self.output_names = [output["name"] for output in config["output"]]
        # Triton's own log, where an operator looks: the stub's Python
        # logging has no handler.
        pb_utils.Logger.log_info(
            f"cxr_fusion loaded path={model_path} intra_op_threads={threads} "
            f"allow_spinning={spinning} providers={self.session.get_providers()} "
            f"onnxruntime={ort.__version__}"
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        """Scores every request of the batch in one onnxruntime call."""
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
        except ORT_ERRORS as exc:
            error = pb_utils.TritonError(f"cxr_fusion inference failed: {exc}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        return _split_responses(self.output_names, outputs, sizes)

    def finalize(self) -> None:
        """Releases the onnxruntime session."""
        self.session = None


def _parameter(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    return str(value) if value else default


def _providers(config: dict[str, Any]) -> list[Any]:
    """Execution providers to ask for, best first, with their options."""
    wanted = _parameter(config, "providers", "cpu").split(",")
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
    found = [named[w.strip()] for w in wanted if named[w.strip()][0] in available]
    return found or ["CPUExecutionProvider"]


def _split_responses(
    names: list[str], outputs: list[np.ndarray], sizes: list[int]
) -> list[Any]:
    """Cuts the batched outputs back into one response per request."""
    bounds = np.cumsum([0, *sizes])
    responses = []
    for start, stop in itertools.pairwise(bounds):
        tensors = [
            pb_utils.Tensor(name, np.ascontiguousarray(output[start:stop]))
            for name, output in zip(names, outputs, strict=True)
        ]
        responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
    return responses
