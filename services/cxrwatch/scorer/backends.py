"""Where the model runs: a Triton server over gRPC, or ONNX Runtime in process.

Both take the same :class:`Batch` and answer the same :class:`Prediction`
(with the version that produced it), and both check at start that the model
matches the feature manifest, refusing to run otherwise
(:class:`ContractMismatch`). Neither assumes a batch size: Triton's comes from
the model's config (``max_batch_size``), ONNX Runtime's from the settings.

Triton (:class:`TritonBackend`):

* start: reads the model's metadata and config, checks inputs and outputs
  (names, dtype FP32 or FP16, shapes without the batch dimension), learns the
  batch size and, when the server is on this host, registers shared-memory
  regions for the image tensor (:mod:`cxrwatch.scorer.shared_memory`);
* infer: binary tensors in the dtype each input declares; the image through
  shared memory or on the wire; the version from the response;
* errors: translated by :mod:`cxrwatch.scorer.triton_errors`. After an outage
  the next call reads the metadata again and re-registers the regions; a
  server that came back with another model is not trusted: scoring pauses
  (:class:`DependencyUnavailable`, readiness false) until it matches again.
"""

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import onnxruntime as ort
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException
from tritonclient.utils.shared_memory import SharedMemoryException

from cxrwatch.core.errors import ContractMismatch, DependencyUnavailable
from cxrwatch.core.manifest import FeatureManifest
from cxrwatch.scorer.shared_memory import ImageRegions, Region, is_loopback
from cxrwatch.scorer.triton_errors import translate

logger = logging.getLogger(__name__)

INPUTS = ("image", "clinical", "clinical_mask")
OUTPUTS = ("p_critical", "progression_risk")
DTYPES = {"FP32": np.float32, "FP16": np.float16}

SharedMemoryMode = Literal["auto", "system", "off"]


@dataclass(frozen=True)
class Batch:
    """Model inputs for several requests, FP32 as the requests carry them."""

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


Declared = dict[str, tuple[str, list[int]]]
"""Tensor name → (Triton dtype, shape without the batch dimension)."""


def check_inputs(
    declared: Declared,
    manifest: FeatureManifest,
    outputs: Declared | None = None,
    model: str = "the model",
) -> None:
    """Compare the served model's inputs (and outputs, when given) with the manifest.

    Raises
    ------
    ContractMismatch
        Naming each tensor whose name, dtype or shape disagrees.
    """
    problems = []
    for name, shape in expected_shapes(manifest).items():
        if name not in declared:
            problems.append(f"input {name!r} missing (model has {sorted(declared)})")
            continue
        dtype, dims = declared[name]
        if dtype not in DTYPES:
            problems.append(f"input {name!r} is {dtype}, expected FP32 or FP16")
        if dims != shape and [d for d in dims if d != -1] != shape:
            problems.append(f"input {name!r} has shape {dims}, manifest says {shape}")
    if outputs is not None:
        problems += _output_problems(outputs)
    if problems:
        raise ContractMismatch(
            f"{model} does not match its feature manifest "
            f"({manifest.model}/features.json): " + "; ".join(problems)
        )


def _output_problems(outputs: Declared) -> list[str]:
    problems = []
    for name in OUTPUTS:
        if name not in outputs:
            problems.append(f"output {name!r} missing (model has {sorted(outputs)})")
            continue
        dtype, dims = outputs[name]
        if dtype not in DTYPES or dims not in ([1], [-1]):
            problems.append(
                f"output {name!r} is {dtype} {dims}, expected FP32 or FP16 [1]"
            )
    return problems


def served_batch_size(
    metadata: dict[str, Any], config: dict[str, Any], cap: int
) -> tuple[int, Declared, Declared]:
    """The batch size a Triton model takes, and its tensors without that dimension.

    A model with ``max_batch_size > 0`` batches on its own (and Triton's
    dynamic batcher can merge requests); one with ``max_batch_size: 0`` may
    still take a batch if its first dimension is variable (-1). ``cap`` (> 0)
    bounds the batch size of the latter.

    Raises
    ------
    ContractMismatch
        For a model whose first dimension is neither a batch nor variable.
    """
    max_batch = int(config.get("max_batch_size", 0))

    def tensors(kind: str) -> tuple[Declared, list[int]]:
        found, leading = {}, []
        for t in metadata.get(kind, []):
            dims = [int(d) for d in t["shape"]]
            leading.append(dims[0] if dims else 0)
            found[t["name"]] = (t["datatype"], dims[1:])
        return found, leading

    inputs, leading = tensors("inputs")
    outputs, _ = tensors("outputs")
    if max_batch > 0:
        return max_batch, inputs, outputs
    if leading and all(d == -1 for d in leading):
        return cap, inputs, outputs
    if leading and all(d == 1 for d in leading):
        return 1, inputs, outputs
    raise ContractMismatch(
        f"model {metadata.get('name')!r} has max_batch_size 0 and first "
        f"dimensions {leading}: the scorer needs a batch dimension (-1) or 1"
    )


class TritonBackend:
    """The model served by Triton, over gRPC with binary tensors."""

    def __init__(
        self,
        url: str,
        model_name: str,
        manifest: FeatureManifest,
        timeout_s: float,
        *,
        model_version: str = "",
        shared_memory: SharedMemoryMode = "auto",
        regions: int = 2,
        batch_cap: int = 32,
        client: InferenceServerClient | None = None,
    ) -> None:
        self.model_name = model_name
        self.max_batch_size = 0  # known once started
        self._url = url
        self._manifest = manifest
        self._timeout_s = timeout_s
        self._version = model_version
        self._shm_mode = shared_memory
        self._region_count = max(1, regions)
        self._batch_cap = batch_cap
        self._client = client or InferenceServerClient(url)
        self._dtypes: dict[str, str] = {}
        self._regions: ImageRegions | None = None
        self._stale = False
        self._restarting = asyncio.Lock()

    @property
    def uses_shared_memory(self) -> bool:
        """Whether the image goes through system shared memory."""
        return self._regions is not None

    async def start(self) -> None:
        """Read the model's metadata and config; refuse a mismatch.

        Raises
        ------
        ContractMismatch
            When the model disagrees with the manifest, or shared memory was
            required (``system``) and the server cannot map it.
        DependencyUnavailable
            When the server or the model is not there yet.
        """
        try:
            metadata = await self._client.get_model_metadata(
                self.model_name, self._version, as_json=True
            )
            config = await self._client.get_model_config(
                self.model_name, self._version, as_json=True
            )
        except InferenceServerException as exc:
            raise translate(exc, self._url, self.model_name) from exc
        size, inputs, outputs = served_batch_size(
            metadata, config["config"], self._batch_cap
        )
        where = f"model {self.model_name} at {self._url}"
        check_inputs(inputs, self._manifest, outputs, model=where)
        self._dtypes = {name: dtype for name, (dtype, _) in inputs.items()}
        self.max_batch_size = size
        await self._start_regions()
        self._stale = False
        logger.info(
            "scoring with Triton model %s versions %s, batch %d, image %s %s",
            self.model_name,
            metadata.get("versions"),
            size,
            self._dtypes["image"],
            "through shared memory" if self.uses_shared_memory else "on the wire",
        )

    async def _start_regions(self) -> None:
        wanted = self._shm_mode == "system" or (
            self._shm_mode == "auto" and is_loopback(self._url)
        )
        if not wanted:
            return
        if self._regions is not None:
            await self._regions.register()
            return
        image = np.dtype(DTYPES[self._dtypes["image"]])
        per_image = int(np.prod(expected_shapes(self._manifest)["image"]))
        byte_size = self.max_batch_size * per_image * image.itemsize
        regions = None
        try:
            regions = ImageRegions(
                self._client, self.model_name, self._region_count, byte_size
            )
            await regions.register()
        except (InferenceServerException, SharedMemoryException, OSError) as exc:
            if regions is not None:
                await regions.close()
            if self._shm_mode == "system":
                raise ContractMismatch(
                    f"Triton at {self._url} cannot map this host's shared memory "
                    f"({exc}); set CXRWATCH_TRITON_SHARED_MEMORY=auto or off"
                ) from exc
            logger.warning(
                "Triton at %s cannot map shared memory (%s); sending images on "
                "the wire (CXRWATCH_TRITON_SHARED_MEMORY=%s)",
                self._url,
                exc,
                self._shm_mode,
            )
            return
        self._regions = regions

    async def ready(self) -> bool:
        """Whether Triton reports the model ready."""
        try:
            return bool(
                await self._client.is_model_ready(self.model_name, self._version)
            )
        except InferenceServerException:
            return False

    async def infer(self, batch: Batch) -> Prediction:
        """Send one batch as binary tensors in the dtypes the model declares.

        Raises
        ------
        DependencyUnavailable
            Triton or the model is away; try the batch again later. Also when
            Triton came back from an outage serving a model that no longer
            matches the manifest: the scorer pauses, it does not dead-letter.
        InvalidInput
            Triton refused the batch.
        """
        if self._stale:
            await self._restart()
        try:
            return await self._infer(batch)
        except InferenceServerException as exc:
            if self._regions is None or not _lost_region(exc):
                raise self._translated(exc) from exc
            # The server restarted while the scorer was idle and forgot the
            # regions: check the model again, register again, send again.
            logger.warning("Triton forgot the shared memory: %s", exc.message())
            self._stale = True
        await self._restart()
        return await self._infer_translated(batch)

    async def _restart(self) -> None:
        async with self._restarting:
            if not self._stale:
                return
            try:
                await self.start()
            except ContractMismatch as exc:
                # Not the requests' fault, so nothing is dead-lettered: the
                # scorer pauses (readiness false, with this message) until the
                # server serves a model that matches again.
                logger.error("Triton came back with another model: %s", exc)
                raise DependencyUnavailable(f"{exc}; scoring paused") from exc

    async def _infer_translated(self, batch: Batch) -> Prediction:
        try:
            return await self._infer(batch)
        except InferenceServerException as exc:
            raise self._translated(exc) from exc

    def _translated(self, exc: InferenceServerException) -> Exception:
        error: Exception = translate(exc, self._url, self.model_name)
        if _lost_region(exc):
            # Not the request's fault: the regions are being registered again.
            error = DependencyUnavailable(str(error))
        if isinstance(error, DependencyUnavailable):
            self._stale = True
        return error

    async def _infer(self, batch: Batch) -> Prediction:
        if self._regions is None:
            return await self._call(self._tensors(batch, None), batch)
        async with self._regions.borrow() as region:
            return await self._call(self._tensors(batch, region), batch)

    def _tensors(self, batch: Batch, region: Region | None) -> list[InferInput]:
        tensors = []
        for name in INPUTS:
            array = getattr(batch, name)
            dtype = self._dtypes.get(name, "FP32")
            tensor = InferInput(name, list(array.shape), dtype)
            if name == "image" and region is not None:
                used = region.write(array, np.dtype(DTYPES[dtype]))
                tensor.set_shared_memory(region.name, used)
            else:
                tensor.set_data_from_numpy(array.astype(DTYPES[dtype], copy=False))
            tensors.append(tensor)
        return tensors

    async def _call(self, inputs: list[InferInput], batch: Batch) -> Prediction:
        outputs = [InferRequestedOutput(name) for name in OUTPUTS]
        result = await self._client.infer(
            self.model_name,
            inputs,
            model_version=self._version,
            outputs=outputs,
            client_timeout=self._timeout_s,
        )
        p, progression = (result.as_numpy(name) for name in OUTPUTS)
        if p is None or progression is None or len(p) != len(batch):
            raise InferenceServerException(
                f"the response holds {None if p is None else len(p)} outputs "
                f"for a batch of {len(batch)}",
                status="StatusCode.INTERNAL",
            )
        return Prediction(
            p_critical=p.astype(np.float32),
            progression_risk=progression.astype(np.float32),
            model_version=str(result.get_response().model_version),
        )

    async def close(self) -> None:
        """Release the regions and close the gRPC channel."""
        if self._regions is not None:
            await self._regions.close()
            self._regions = None
        await self._client.close()


def _lost_region(exc: InferenceServerException) -> bool:
    message = (exc.message() or "").lower()
    return "shared memory" in message and (
        "unable to find" in message or "not found" in message
    )


class OnnxRuntimeBackend:
    """The same ONNX file, run in this process; for machines without Triton."""

    def __init__(
        self,
        model_path: Path,
        model_name: str,
        manifest: FeatureManifest,
        threads: int,
        *,
        max_batch_size: int = 32,
    ) -> None:
        self.model_name = model_name
        self.max_batch_size = max_batch_size
        self._path = model_path
        self._manifest = manifest
        self._threads = threads
        self._session: ort.InferenceSession | None = None
        self._dtypes: dict[str, str] = {}

    async def start(self) -> None:
        """Load the model and check its inputs and outputs.

        Raises
        ------
        ContractMismatch
            When the file does not load or disagrees with the manifest.
        """
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        # Threads that spin between calls take the event loop's core.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(
                str(self._path), options, providers=["CPUExecutionProvider"]
            )
        except (OSError, RuntimeError) as exc:
            raise ContractMismatch(f"cannot load {self._path}: {exc}") from exc
        inputs = _onnx_tensors(session.get_inputs())
        outputs = _onnx_tensors(session.get_outputs())
        check_inputs(inputs, self._manifest, outputs, model=str(self._path))
        self._dtypes = {name: dtype for name, (dtype, _) in inputs.items()}
        self._session = session

    async def ready(self) -> bool:
        """Ready once loaded."""
        return self._session is not None

    async def infer(self, batch: Batch) -> Prediction:
        """Run the batch on a worker thread, in the dtypes the model declares."""
        if self._session is None:
            raise DependencyUnavailable("the ONNX Runtime session is not loaded")
        session = self._session
        feeds = {
            name: getattr(batch, name).astype(DTYPES[self._dtypes[name]], copy=False)
            for name in INPUTS
        }
        p, progression = await asyncio.to_thread(session.run, list(OUTPUTS), feeds)
        return Prediction(
            p_critical=np.asarray(p, dtype=np.float32),
            progression_risk=np.asarray(progression, dtype=np.float32),
            model_version=self._path.parent.name,
        )

    async def close(self) -> None:
        """Drop the session."""
        self._session = None


def _onnx_tensors(tensors: list[Any]) -> Declared:
    names = {"tensor(float)": "FP32", "tensor(float16)": "FP16"}
    return {
        t.name: (names.get(t.type, t.type), [_dim(d) for d in t.shape][1:])
        for t in tensors
    }


def _dim(value: object) -> int:
    return value if isinstance(value, int) else -1
