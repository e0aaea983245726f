"""Where the model runs: a Triton server over gRPC, or ONNX Runtime in process.

Both take the same batch and answer the same :class:`Prediction`, and both
check at start that the model's inputs match the feature manifest, refusing to
run otherwise. Triton's errors are translated here into the project's own:
unavailable or timed out → :class:`DependencyUnavailable` (retried), a refused
shape or dtype → :class:`InvalidInput` (dead-lettered).
"""

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from cxrwatch.core.errors import ContractMismatch, DependencyUnavailable, InvalidInput
from cxrwatch.core.manifest import FeatureManifest

logger = logging.getLogger(__name__)

INPUTS = ("image", "clinical", "clinical_mask")
OUTPUTS = ("p_critical", "progression_risk")

# gRPC status codes that a retry can fix.
_TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED")


@dataclass(frozen=True)
class Batch:
    """Model inputs for several requests."""

    image: np.ndarray
    clinical: np.ndarray
    clinical_mask: np.ndarray

    def __len__(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class Prediction:
    """Model outputs for a batch, and which model version produced them."""

    p_critical: np.ndarray
    progression_risk: np.ndarray
    model_version: str


class InferenceBackend(Protocol):
    """A place to run the model."""

    model_name: str
    max_batch_size: int

    async def start(self) -> None:
        """Connect and check the model against the manifest."""

    async def ready(self) -> bool:
        """Whether the model can take requests now."""

    async def infer(self, batch: Batch) -> Prediction:
        """Run one batch of at most ``max_batch_size``."""

    async def close(self) -> None:
        """Release connections."""


def expected_shapes(manifest: FeatureManifest) -> dict[str, list[int]]:
    """Per-input shape, without the batch dimension, as the manifest says."""
    k = len(manifest.features)
    image = manifest.image
    return {
        "image": [image.channels, image.height, image.width],
        "clinical": [k],
        "clinical_mask": [k],
    }


def check_inputs(
    declared: dict[str, tuple[str, list[int]]], manifest: FeatureManifest
) -> None:
    """Compare the served model's inputs with the manifest.

    Raises
    ------
    ContractMismatch
        Naming each input whose name, dtype or shape disagrees.
    """
    problems = []
    for name, shape in expected_shapes(manifest).items():
        if name not in declared:
            problems.append(f"input {name!r} missing (model has {sorted(declared)})")
            continue
        dtype, dims = declared[name]
        if dtype not in ("FP32", "FP16"):
            problems.append(f"input {name!r} is {dtype}, expected FP32 or FP16")
        if [d for d in dims if d != -1] != shape and dims != shape:
            problems.append(f"input {name!r} has shape {dims}, manifest says {shape}")
    if problems:
        raise ContractMismatch(
            "the model does not match its feature manifest: " + "; ".join(problems)
        )


class TritonBackend:
    """The model served by Triton, over gRPC with binary tensors."""

    def __init__(
        self, url: str, model_name: str, manifest: FeatureManifest, timeout_s: float
    ) -> None:
        self.model_name = model_name
        self.max_batch_size = 1
        self._url = url
        self._manifest = manifest
        self._timeout_s = timeout_s
        self._client = InferenceServerClient(url)
        self._dtypes: dict[str, str] = {}

    async def start(self) -> None:
        """Read the model's metadata and config; refuse a mismatch."""
        try:
            metadata = await self._client.get_model_metadata(
                self.model_name, as_json=True
            )
            config = await self._client.get_model_config(self.model_name, as_json=True)
        except InferenceServerException as exc:
            raise _translate(exc, self._url) from exc
        declared = {
            i["name"]: (i["datatype"], [int(d) for d in i["shape"]][1:])
            for i in metadata["inputs"]
        }
        check_inputs(declared, self._manifest)
        self._dtypes = {name: dtype for name, (dtype, _) in declared.items()}
        self.max_batch_size = max(1, int(config["config"].get("max_batch_size", 1)))
        logger.info(
            "scoring with Triton model %s versions %s, max batch %d",
            self.model_name,
            metadata.get("versions"),
            self.max_batch_size,
        )

    async def ready(self) -> bool:
        """Whether Triton reports the model ready."""
        try:
            return bool(await self._client.is_model_ready(self.model_name))
        except InferenceServerException:
            return False

    async def infer(self, batch: Batch) -> Prediction:
        """Send one batch as binary tensors in the dtypes the model declares."""
        inputs = []
        for name in INPUTS:
            array = getattr(batch, name)
            dtype = self._dtypes.get(name, "FP32")
            tensor = InferInput(name, list(array.shape), dtype)
            tensor.set_data_from_numpy(
                array.astype(np.float16 if dtype == "FP16" else np.float32)
            )
            inputs.append(tensor)
        outputs = [InferRequestedOutput(name) for name in OUTPUTS]
        try:
            result = await self._client.infer(
                self.model_name,
                inputs,
                outputs=outputs,
                client_timeout=self._timeout_s,
            )
        except InferenceServerException as exc:
            raise _translate(exc, self._url) from exc
        response = result.get_response()
        return Prediction(
            p_critical=result.as_numpy("p_critical").astype(np.float32),
            progression_risk=result.as_numpy("progression_risk").astype(np.float32),
            model_version=str(response.model_version or "1"),
        )

    async def close(self) -> None:
        """Close the gRPC channel."""
        await self._client.close()


def _translate(exc: InferenceServerException, url: str) -> Exception:
    status = str(exc.status() or "")
    message = exc.message() or str(exc)
    if any(code in status for code in _TRANSIENT) or "failed to connect" in message:
        return DependencyUnavailable(f"Triton at {url}: {message}")
    if "not ready" in message or "unknown model" in message:
        return DependencyUnavailable(f"Triton at {url}: {message}")
    return InvalidInput(f"Triton refused the request ({status}): {message}")


class OnnxRuntimeBackend:
    """The same ONNX file, run in this process; for machines without Triton."""

    def __init__(
        self, model_path: Path, model_name: str, manifest: FeatureManifest, threads: int
    ) -> None:
        self.model_name = model_name
        self.max_batch_size = 32
        self._path = model_path
        self._manifest = manifest
        self._threads = threads
        self._session: ort.InferenceSession | None = None

    async def start(self) -> None:
        """Load the model and check its inputs."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        try:
            session = ort.InferenceSession(
                str(self._path), options, providers=["CPUExecutionProvider"]
            )
        except (OSError, RuntimeError) as exc:
            raise ContractMismatch(f"cannot load {self._path}: {exc}") from exc
        dtypes = {"tensor(float)": "FP32", "tensor(float16)": "FP16"}
        declared = {
            i.name: (dtypes.get(i.type, i.type), [_dim(d) for d in i.shape][1:])
            for i in session.get_inputs()
        }
        check_inputs(declared, self._manifest)
        self._session = session

    async def ready(self) -> bool:
        """Ready once loaded."""
        return self._session is not None

    async def infer(self, batch: Batch) -> Prediction:
        """Run the batch on a worker thread."""
        if self._session is None:
            raise DependencyUnavailable("the ONNX Runtime session is not loaded")
        session = self._session
        feeds = {name: getattr(batch, name).astype(np.float32) for name in INPUTS}
        p, progression = await asyncio.to_thread(session.run, list(OUTPUTS), feeds)
        return Prediction(
            p_critical=np.asarray(p, dtype=np.float32),
            progression_risk=np.asarray(progression, dtype=np.float32),
            model_version=self._path.parent.name,
        )

    async def close(self) -> None:
        """Drop the session."""
        self._session = None


def _dim(value: object) -> int:
    return value if isinstance(value, int) else -1
