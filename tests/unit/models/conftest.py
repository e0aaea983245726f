"""Fixtures for the model tests: the ONNX session and synthetic chest phantoms."""

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest

MODELS = Path(__file__).resolve().parents[3] / "models"
PHANTOM_SEED = 20210401


def _load_phantom_module() -> ModuleType:
    """Imports models/chest_phantom.py by path, writing no __pycache__ there."""
    spec = importlib.util.spec_from_file_location(
        "cxr_chest_phantom", MODELS / "chest_phantom.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    previous, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = previous
    return module


@pytest.fixture(scope="session")
def session() -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(
        str(MODELS / "cxr_fusion" / "1" / "model.onnx"),
        options,
        providers=["CPUExecutionProvider"],
    )


@pytest.fixture(scope="session")
def chest() -> Callable[[float], np.ndarray]:
    """Renders the reference phantom anatomy with a given lung opacity."""
    phantom = _load_phantom_module()

    def render(lung_opacity: float) -> np.ndarray:
        rng = np.random.default_rng(PHANTOM_SEED)
        image = phantom.render(rng, lung_opacity).image
        return np.asarray(image, dtype=np.float32)[None]

    return render
