"""cxr_fusion served by a real Triton server on the CPU, over gRPC.

Starts the nvidia-pytriton wheel's tritonserver through
``scripts/triton/start_triton.sh`` on free loopback ports, with the model
repository under ``models/``. The Triton venv is found through TRITON_VENV
(default ``.venv-triton``); the module is skipped, saying why, only when that
venv is missing.

Expected probabilities are worked by hand from the rule in
models/cxr_fusion/MODEL_CARD.md; the served outputs must also equal
onnxruntime's on the same ONNX file, in this process.
"""

import importlib.util
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as triton_grpc

from tests.servers import REPO, free_port, process

pytestmark = pytest.mark.integration

MODEL = "cxr_fusion"
MODEL_DIR = REPO / "models" / MODEL
START_SCRIPT = REPO / "scripts" / "triton" / "start_triton.sh"
READY_TIMEOUT_S = 120.0
FEATURES = json.loads((MODEL_DIR / "features.json").read_text("utf-8"))["features"]

NORMAL = {
    "age": 55.0, "sex": 1.0, "spo2": 97.0, "on_oxygen": 0.0, "resp_rate": 16.0,
    "heart_rate": 75.0, "temperature": 37.0, "systolic_bp": 120.0, "wbc": 7.0,
    "lymphocytes": 2.0, "crp": 5.0, "ldh": 180.0,
}  # fmt: skip
SICK = {
    "age": 70.0, "sex": 1.0, "spo2": 86.0, "on_oxygen": 1.0, "resp_rate": 30.0,
    "heart_rate": 120.0, "temperature": 38.8, "lymphocytes": 0.6, "crp": 150.0,
    "ldh": 450.0,
}  # fmt: skip

# The rule of MODEL_CARD.md worked by hand, average chest (image term 0); each
# term is w * (basis(value) - basis(manifest mean)):
#   normal: age -0.175, sex +0.135, spo2 -0.28, on_oxygen -0.27, resp_rate
#           -0.24, lymphocytes -0.39, crp 0.7 * ln(1.5 / 6) = -0.9704, ldh
#           -0.3, the rest 0: sum -2.4904; -1.4 - 2.4904 = -3.890 -> p 0.020
#   sick:   age +0.35, sex +0.135, spo2 +2.52, on_oxygen +0.63, resp_rate
#           +1.2, heart_rate +0.75, temperature +0.585, lymphocytes +0.78,
#           crp 0.7 * ln(16 / 6) = +0.6866, ldh +0.85, sbp and wbc missing:
#           sum 8.4866; -1.4 + 8.4866 = 7.087 -> p 0.9992
#   sick with every mask 0: -1.4 -> p 0.198
EXPECTED_P = (0.020, 0.9992, 0.198)


@pytest.fixture(scope="module")
def triton_venv() -> Path:
    venv = Path(os.environ.get("TRITON_VENV", REPO / ".venv-triton")).resolve()
    if not (venv / "bin" / "python").exists():
        pytest.skip(
            f"no Triton venv at {venv} (set TRITON_VENV, or run `make deps`, which "
            "installs scripts/triton/requirements.txt into .venv-triton)"
        )
    return venv


@pytest.fixture(scope="module")
def triton_url(triton_venv: Path) -> Iterator[str]:
    """A tritonserver serving models/ on free loopback ports; its gRPC address."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    log = REPO / "test-output" / "logs" / f"triton-{grpc}.log"
    argv = ["bash", str(START_SCRIPT), str(REPO / "models"), *map(str, (http, grpc))]
    argv.append(str(metrics))
    env = {**os.environ, "TRITON_VENV": str(triton_venv)}
    with process(argv, log, env) as server:
        _wait_ready(f"http://127.0.0.1:{http}/v2/health/ready", server.poll, log)
        yield f"127.0.0.1:{grpc}"


def _wait_ready(url: str, exit_code: Callable[[], int | None], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if exit_code() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"tritonserver exited early; log {log}:\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(
        f"Triton not ready at {url} after {READY_TIMEOUT_S} s; see {log}"
    )


def average_chest() -> np.ndarray:
    """The reference phantom at the cohort-mean lung opacity, [1, 224, 224]."""
    spec = importlib.util.spec_from_file_location(
        "cxr_chest_phantom", REPO / "models" / "chest_phantom.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    previous, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = previous
    image = module.render(np.random.default_rng(20210401), 0.08).image
    return np.asarray(image, dtype=np.float32)[None]


def vectors(patient: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    clinical = np.zeros(len(FEATURES), dtype=np.float32)
    mask = np.zeros(len(FEATURES), dtype=np.float32)
    for i, feature in enumerate(FEATURES):
        if feature["name"] in patient:
            value = patient[feature["name"]]
            clinical[i] = (value - feature["mean"]) / feature["std"]
            mask[i] = 1.0
    return clinical, mask


@pytest.fixture(scope="module")
def batch() -> dict[str, np.ndarray]:
    """Normal patient, sick patient, sick patient with every mask 0."""
    normal, sick = vectors(NORMAL), vectors(SICK)
    return {
        "image": np.repeat(average_chest()[None], 3, axis=0),
        "clinical": np.stack([normal[0], sick[0], sick[0]]),
        "clinical_mask": np.stack([normal[1], sick[1], np.zeros_like(sick[1])]),
    }


def infer(url: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    client = triton_grpc.InferenceServerClient(url)
    requests = []
    for name, array in inputs.items():
        tensor = triton_grpc.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        requests.append(tensor)
    result = client.infer(MODEL, requests)
    client.close()
    return {name: result.as_numpy(name) for name in ("p_critical", "progression_risk")}


def test_served_outputs_have_the_contract_shapes(
    triton_url: str, batch: dict[str, np.ndarray]
) -> None:
    outputs = infer(triton_url, batch)
    assert outputs["p_critical"].shape == (3, 1)
    assert outputs["progression_risk"].shape == (3, 1)
    assert outputs["p_critical"].dtype == np.float32


def test_served_probabilities_follow_the_rule(
    triton_url: str, batch: dict[str, np.ndarray]
) -> None:
    p = infer(triton_url, batch)["p_critical"][:, 0]
    assert p[0] < 0.2
    assert p[1] > 0.8
    assert p[0] < p[2] < p[1]
    assert p == pytest.approx(EXPECTED_P, abs=0.05)


def test_served_outputs_equal_onnxruntime_in_process(
    triton_url: str, batch: dict[str, np.ndarray]
) -> None:
    session = ort.InferenceSession(
        str(MODEL_DIR / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    expected = session.run(["p_critical", "progression_risk"], batch)
    served = infer(triton_url, batch)
    np.testing.assert_allclose(served["p_critical"], expected[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(
        served["progression_risk"], expected[1], rtol=0, atol=1e-5
    )


def test_metadata_declares_the_contract(triton_url: str) -> None:
    client = triton_grpc.InferenceServerClient(triton_url)
    metadata = client.get_model_metadata(MODEL, as_json=True)
    config = client.get_model_config(MODEL, as_json=True)["config"]
    client.close()
    assert {t["name"]: (t["datatype"], t["shape"]) for t in metadata["inputs"]} == {
        "image": ("FP32", ["-1", "1", "224", "224"]),
        "clinical": ("FP32", ["-1", "12"]),
        "clinical_mask": ("FP32", ["-1", "12"]),
    }
    assert {t["name"]: (t["datatype"], t["shape"]) for t in metadata["outputs"]} == {
        "p_critical": ("FP32", ["-1", "1"]),
        "progression_risk": ("FP32", ["-1", "1"]),
    }
    assert config["max_batch_size"] == 32
    assert config["backend"] == "python"


def test_a_full_batch_of_32_splits_back_per_request(
    triton_url: str, batch: dict[str, np.ndarray]
) -> None:
    inputs = {name: np.repeat(array[1:2], 32, axis=0) for name, array in batch.items()}
    p = infer(triton_url, inputs)["p_critical"][:, 0]
    assert p.shape == (32,)
    assert np.ptp(p) < 1e-6
