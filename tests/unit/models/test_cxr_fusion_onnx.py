"""The committed ONNX file and Triton configs of cxr_fusion against the contract.

Reads the files only: no torch, no server. The graph's inputs and outputs are
read through onnxruntime (an application dependency); the opset and the ONNX
checker need the ``onnx`` package and are skipped, saying so, without it.
"""

from pathlib import Path

import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

MODEL_DIR = Path(__file__).resolve().parents[3] / "models" / "cxr_fusion"
ONNX_PATH = MODEL_DIR / "1" / "model.onnx"

INPUTS = {"image": [1, 224, 224], "clinical": [12], "clinical_mask": [12]}
OUTPUTS = {"p_critical": [1], "progression_risk": [1]}
FEATURES = (
    "age,sex,spo2,on_oxygen,resp_rate,heart_rate,temperature,systolic_bp,"
    "wbc,lymphocytes,crp,ldh"
)


def _signature(values: list[ort.NodeArg]) -> dict[str, list[int | str]]:
    assert all(v.type == "tensor(float)" for v in values), values
    return {v.name: list(v.shape) for v in values}


def test_inputs_are_the_contract_with_a_dynamic_batch(
    session: ort.InferenceSession,
) -> None:
    assert _signature(session.get_inputs()) == {
        name: ["batch", *dims] for name, dims in INPUTS.items()
    }


def test_outputs_are_the_contract_with_a_dynamic_batch(
    session: ort.InferenceSession,
) -> None:
    assert _signature(session.get_outputs()) == {
        name: ["batch", *dims] for name, dims in OUTPUTS.items()
    }


def test_size_and_labels(session: ort.InferenceSession) -> None:
    metadata = session.get_modelmeta().custom_metadata_map
    assert 10e6 < ONNX_PATH.stat().st_size < 25e6
    assert metadata["intended_use"] == "NOT FOR CLINICAL USE"
    assert metadata["features"] == FEATURES


def test_opset_17_and_the_onnx_checker() -> None:
    onnx = pytest.importorskip("onnx", reason="the onnx package is not installed")
    model = onnx.load(str(ONNX_PATH))
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets[""] == 17
    onnx.checker.check_model(model)


def _config(name: str) -> model_config_pb2.ModelConfig:
    text = (MODEL_DIR / name).read_text(encoding="utf-8")
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def _io(config: model_config_pb2.ModelConfig) -> dict[str, dict[str, list[int]]]:
    fp32 = model_config_pb2.DataType.TYPE_FP32
    assert all(t.data_type == fp32 for t in [*config.input, *config.output])
    return {
        "inputs": {t.name: list(t.dims) for t in config.input},
        "outputs": {t.name: list(t.dims) for t in config.output},
    }


@pytest.mark.parametrize("name", ["config.pbtxt", "config.gpu.pbtxt"])
def test_triton_configs_declare_the_contract(name: str) -> None:
    config = _config(name)
    assert config.name == "cxr_fusion"
    assert config.max_batch_size == 32
    assert _io(config) == {"inputs": INPUTS, "outputs": OUTPUTS}
    assert config.dynamic_batching.max_queue_delay_microseconds <= 5000


def test_cpu_config_runs_the_python_backend() -> None:
    config = _config("config.pbtxt")
    assert config.backend == "python"
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert int(config.parameters["intra_op_threads"].string_value) >= 0


def test_gpu_config_runs_onnxruntime_with_tensorrt_fp16() -> None:
    config = _config("config.gpu.pbtxt")
    accelerators = config.optimization.execution_accelerators
    tensorrt = accelerators.gpu_execution_accelerator[0]
    assert config.platform == "onnxruntime_onnx"
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert tensorrt.name == "tensorrt"
    assert tensorrt.parameters["precision_mode"] == "FP16"
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16, 32]
