"""TritonBackend against a stand-in gRPC client: contract, batch size, dtypes.

The stand-in answers metadata and config the way tritonclient's aio client
does (JSON dicts, shapes as strings) and records what each call sent, so the
tests can check the tensors' dtype and bytes without a server. The same
behaviour against a real Triton is in tests/integration/test_scorer_triton.py.
"""

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cxrwatch.core.errors import ContractMismatch, DependencyUnavailable, InvalidInput
from cxrwatch.core.manifest import load_manifest
from cxrwatch.scorer.backends import Batch, TritonBackend
from tritonclient.grpc import InferInput
from tritonclient.utils import InferenceServerException

MANIFEST = load_manifest(
    Path(__file__).parents[3] / "models" / "cxr_fusion" / "features.json"
)

METADATA: dict[str, Any] = {
    "name": "cxr_fusion",
    "versions": ["1"],
    "inputs": [
        {"name": "image", "datatype": "FP32", "shape": ["-1", "1", "224", "224"]},
        {"name": "clinical", "datatype": "FP32", "shape": ["-1", "12"]},
        {"name": "clinical_mask", "datatype": "FP32", "shape": ["-1", "12"]},
    ],
    "outputs": [
        {"name": "p_critical", "datatype": "FP32", "shape": ["-1", "1"]},
        {"name": "progression_risk", "datatype": "FP32", "shape": ["-1", "1"]},
    ],
}


class Response:
    def __init__(self, version: str) -> None:
        self.model_version = version


class Result:
    def __init__(self, n: int, version: str) -> None:
        self._outputs = {
            "p_critical": np.linspace(0.1, 0.9, n, dtype=np.float32)[:, None],
            "progression_risk": np.zeros((n, 1), dtype=np.float32),
        }
        self._version = version

    def as_numpy(self, name: str) -> np.ndarray:
        return self._outputs[name]

    def get_response(self) -> Response:
        return Response(self._version)


class StandInClient:
    """Answers like tritonclient.grpc.aio.InferenceServerClient."""

    def __init__(self, metadata: dict[str, Any], max_batch_size: int = 32) -> None:
        self.metadata = metadata
        self.max_batch_size = max_batch_size
        self.version = "3"
        self.sent: list[list[InferInput]] = []
        self.metadata_reads = 0
        self.failure: InferenceServerException | None = None
        self.registered: list[str] = []

    async def get_model_metadata(
        self, name: str, version: str = "", as_json: bool = False
    ) -> dict[str, Any]:
        self.metadata_reads += 1
        if self.failure is not None:
            raise self.failure
        return copy.deepcopy(self.metadata)

    async def get_model_config(
        self, name: str, version: str = "", as_json: bool = False
    ) -> dict[str, Any]:
        return {"config": {"name": name, "max_batch_size": self.max_batch_size}}

    async def infer(
        self, model_name: str, inputs: list[InferInput], **options: Any
    ) -> Result:
        if self.failure is not None:
            raise self.failure
        self.sent.append(inputs)
        return Result(inputs[0].shape()[0], self.version)

    async def register_system_shared_memory(self, *args: Any) -> None:
        self.registered.append(args[0])

    async def close(self) -> None:
        pass


def with_input(name: str, datatype: str, shape: list[str]) -> dict[str, Any]:
    metadata = copy.deepcopy(METADATA)
    for tensor in metadata["inputs"]:
        if tensor["name"] == name:
            tensor["datatype"], tensor["shape"] = datatype, shape
    return metadata


def backend(client: Any, url: str = "triton.example:8001") -> TritonBackend:
    # A remote address: no shared memory in "auto" mode.
    return TritonBackend(url, "cxr_fusion", MANIFEST, 5.0, client=client)


def batch(n: int) -> Batch:
    rng = np.random.default_rng(3)
    return Batch(
        image=rng.random((n, 1, 224, 224), dtype=np.float32),
        clinical=rng.standard_normal((n, 12)).astype(np.float32),
        clinical_mask=np.ones((n, 12), dtype=np.float32),
    )


async def test_the_batch_size_comes_from_the_model_config() -> None:
    triton = backend(StandInClient(METADATA, max_batch_size=16))
    await triton.start()
    assert triton.max_batch_size == 16
    assert not triton.uses_shared_memory


async def test_a_model_without_batching_but_a_variable_first_dim_takes_the_cap() -> (
    None
):
    triton = backend(StandInClient(METADATA, max_batch_size=0))
    await triton.start()
    assert triton.max_batch_size == 32


async def test_a_model_fixed_at_four_is_refused() -> None:
    metadata = copy.deepcopy(METADATA)
    for tensor in metadata["inputs"] + metadata["outputs"]:
        tensor["shape"][0] = "4"
    with pytest.raises(ContractMismatch, match="max_batch_size 0"):
        await backend(StandInClient(metadata, max_batch_size=0)).start()


async def test_clinical_dims_of_eleven_are_refused_naming_the_input() -> None:
    client = StandInClient(with_input("clinical", "FP32", ["-1", "11"]))
    with pytest.raises(ContractMismatch) as refused:
        await backend(client).start()
    message = str(refused.value)
    assert "'clinical' has shape [11], manifest says [12]" in message
    assert "cxr_fusion" in message and "triton.example:8001" in message


async def test_an_integer_image_is_refused() -> None:
    client = StandInClient(with_input("image", "UINT8", ["-1", "1", "224", "224"]))
    with pytest.raises(ContractMismatch, match="'image' is UINT8"):
        await backend(client).start()


async def test_a_missing_output_is_refused() -> None:
    metadata = copy.deepcopy(METADATA)
    metadata["outputs"] = metadata["outputs"][:1]
    with pytest.raises(ContractMismatch, match="'progression_risk' missing"):
        await backend(StandInClient(metadata)).start()


async def test_tensors_go_in_the_dtype_each_input_declares() -> None:
    client = StandInClient(with_input("image", "FP16", ["-1", "1", "224", "224"]))
    triton = backend(client)
    await triton.start()
    sent = batch(3)

    prediction = await triton.infer(sent)

    image, clinical, mask = client.sent[0]
    assert (image.datatype(), clinical.datatype(), mask.datatype()) == (
        "FP16",
        "FP32",
        "FP32",
    )
    assert image.shape() == [3, 1, 224, 224]
    as_half = np.frombuffer(image._get_content(), dtype=np.float16)
    assert np.array_equal(as_half, sent.image.astype(np.float16).ravel())
    assert np.array_equal(
        np.frombuffer(clinical._get_content(), dtype=np.float32), sent.clinical.ravel()
    )
    assert prediction.model_version == "3"
    assert prediction.p_critical.shape == (3, 1)


async def test_after_an_outage_another_model_pauses_scoring() -> None:
    client = StandInClient(METADATA)
    triton = backend(client)
    await triton.start()
    client.failure = InferenceServerException(
        "failed to connect", status="StatusCode.UNAVAILABLE"
    )
    with pytest.raises(DependencyUnavailable):
        await triton.infer(batch(1))

    # It came back serving a model with eleven clinical inputs.
    client.failure = None
    client.metadata = with_input("clinical", "FP32", ["-1", "11"])
    # Not the requests' fault: scoring pauses instead of dead-lettering.
    with pytest.raises(DependencyUnavailable, match="'clinical' has shape \\[11\\]"):
        await triton.infer(batch(1))


async def test_after_an_outage_the_same_model_is_trusted_again() -> None:
    client = StandInClient(METADATA)
    triton = backend(client)
    await triton.start()
    client.failure = InferenceServerException("late", status="StatusCode.ABORTED")
    with pytest.raises(DependencyUnavailable):
        await triton.infer(batch(2))
    client.failure = None

    prediction = await triton.infer(batch(2))

    assert client.metadata_reads == 2
    assert prediction.p_critical.shape == (2, 1)


async def test_a_refusal_does_not_make_the_model_suspect() -> None:
    client = StandInClient(METADATA)
    triton = backend(client)
    await triton.start()
    client.failure = InferenceServerException(
        "unexpected shape", status="StatusCode.INVALID_ARGUMENT"
    )
    with pytest.raises(InvalidInput):
        await triton.infer(batch(2))
    client.failure = None
    await triton.infer(batch(2))
    assert client.metadata_reads == 1


async def test_shared_memory_required_for_a_remote_server_refuses_to_start() -> None:
    class Remote(StandInClient):
        async def get_system_shared_memory_status(
            self, as_json: bool
        ) -> dict[str, Any]:
            return {}

        async def register_system_shared_memory(self, *args: Any) -> None:
            raise InferenceServerException(
                "Unable to open shared memory region", status="StatusCode.INTERNAL"
            )

        async def unregister_system_shared_memory(self, name: str) -> None:
            pass

    triton = TritonBackend(
        "triton.example:8001",
        "cxr_fusion",
        MANIFEST,
        5.0,
        shared_memory="system",
        regions=1,
        client=Remote(METADATA),
    )
    with pytest.raises(ContractMismatch, match="CXRWATCH_TRITON_SHARED_MEMORY"):
        await triton.start()
