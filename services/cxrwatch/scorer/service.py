"""Scorer: inference requests in, risk scores out.

* Consumes ``inference.requests.v1``. Takes what one poll returns (up to
  ``CXRWATCH_BATCH_MAX_RECORDS``; with ``CXRWATCH_BATCH_WAIT_MS`` > 0 the
  runtime's poll waits that long for a full micro-batch, the scorer's
  ``batch_size``) and sends it to the model in micro-batches of
  ``CXRWATCH_MICRO_BATCH_SIZE`` (default: the model's own ``max_batch_size``),
  up to ``CXRWATCH_MAX_INFLIGHT_BATCHES`` of them at once, so that Triton's
  dynamic batcher can merge them and the client prepares one batch while the
  server computes another.
* Emits one ``RiskScore`` per request on ``risk.scores.v1``, in input order
  whatever order the batches finish in, so one patient's scores keep their
  order. The score id derives from the request id, the model name and the
  version that answered: a redelivered request scores the same id.
* With ``CXRWATCH_SHADOW_MODEL_NAME`` set, a second model scores the same
  micro-batches; its scores follow the primary's on ``risk.scores.v1`` with
  ``shadow=true`` and their own ids, and the alerter ignores them. A shadow
  that is down or refuses only costs its own scores (logged and counted in
  ``cxrwatch_shadow_failures_total``): it never stalls or dead-letters.
* Commits through the shared runtime, after the scores are acknowledged.
* Dead-letters requests that do not decode, requests whose image or clinical
  vector is not the size the manifest gives (before they reach the model, so
  one cannot spoil a micro-batch), and requests the model refuses (isolated by
  re-sending the batch one request at a time).
* When Triton is unreachable or the model is not ready, the batch stops
  there, nothing after it is committed, and the runtime retries with back-off.
"""

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from aiokafka import ConsumerRecord
from prometheus_client import Counter
from pydantic import Field

from cxrwatch.core import topics
from cxrwatch.core.errors import (
    ContractMismatch,
    CxrwatchError,
    DependencyUnavailable,
    InvalidInput,
)
from cxrwatch.core.events import InferenceRequest, RiskScore, decode_event
from cxrwatch.core.ids import deterministic_id
from cxrwatch.core.kafka import Output
from cxrwatch.core.manifest import FeatureManifest, load_manifest
from cxrwatch.core.settings import ServiceSettings
from cxrwatch.core.stream import Outcome, Stalled
from cxrwatch.scorer.backends import (
    Batch,
    InferenceBackend,
    OnnxRuntimeBackend,
    Prediction,
    SharedMemoryMode,
    TritonBackend,
    expected_shapes,
)

logger = logging.getLogger(__name__)

SHADOW_FAILURES = Counter(
    "cxrwatch_shadow_failures_total",
    "Micro-batches the shadow model did not score, by error class.",
    ["model", "error_class"],
)
SHADOW_RETRY_S = 30.0
"""How long a shadow that could not start is left alone before another try."""


class ScorerSettings(ServiceSettings):
    """Settings of the scorer."""

    backend: Literal["triton", "onnxruntime"] = Field(
        "triton", description="Where the model runs."
    )
    triton_url: str = Field("127.0.0.1:8001", description="Triton gRPC address.")
    triton_timeout_s: float = Field(30.0, gt=0, description="Per-request timeout.")
    triton_model_version: str = Field(
        "", description="Version to ask Triton for; empty: the newest it serves."
    )
    triton_shared_memory: SharedMemoryMode = Field(
        "auto",
        description="Image through system shared memory: auto (loopback "
        "servers, else the wire), system (required) or off.",
    )
    onnx_threads: int = Field(2, ge=1, description="Threads for in-process ONNX.")
    model_version: str = Field("1", description="Version folder for in-process ONNX.")
    micro_batch_size: int = Field(
        0, ge=0, description="Requests per model call; 0: the model's batch size."
    )
    max_inflight_batches: int = Field(
        2, ge=1, description="Micro-batches sent to the model at once."
    )
    shadow_model_name: str | None = Field(
        None, description="A second model that scores without alerting."
    )
    shadow_model_version: str = Field(
        "", description="Version of the shadow model; empty: the newest."
    )


class Scorer:
    """The scorer's processor."""

    name = "scorer"
    input_topics: Sequence[str] = (topics.INFERENCE_REQUESTS,)

    def __init__(
        self,
        backend: InferenceBackend,
        manifest: FeatureManifest,
        *,
        shadow: InferenceBackend | None = None,
        micro_batch_size: int = 0,
        max_inflight: int = 1,
    ) -> None:
        self._backend = backend
        self._manifest = manifest
        self._shadow = shadow
        self._shadow_started = False
        self._shadow_next_try = 0.0
        self._micro_batch_size = micro_batch_size
        self._max_inflight = max(1, max_inflight)

    @property
    def batch_size(self) -> int:
        """Requests per model call: the setting, within the model's limit."""
        limit = self._backend.max_batch_size
        if self._micro_batch_size and limit:
            return min(self._micro_batch_size, limit)
        return self._micro_batch_size or limit or 1

    async def start(self) -> None:
        """Wait for the model server; refuse to run on a contract mismatch."""
        delay = 0.5
        while True:
            try:
                await self._backend.start()
                break
            except DependencyUnavailable as exc:
                logger.warning("scorer waiting for the model: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        await self._start_shadow()

    async def _start_shadow(self) -> None:
        """Start the shadow once; a shadow that is away is tried again later."""
        if self._shadow is None or self._shadow_started:
            return
        if time.monotonic() < self._shadow_next_try:
            return
        try:
            await self._shadow.start()
        except DependencyUnavailable as exc:
            self._shadow_next_try = time.monotonic() + SHADOW_RETRY_S
            logger.warning(
                "shadow model %s is not available (%s); scoring without it, "
                "next try in %.0f s",
                self._shadow.model_name,
                exc,
                SHADOW_RETRY_S,
            )
            return
        self._shadow_started = True
        logger.info("shadow model %s scores beside it", self._shadow.model_name)

    async def stop(self) -> None:
        """Close the backends."""
        await self._backend.close()
        if self._shadow is not None:
            await self._shadow.close()

    async def process(self, records: Sequence[ConsumerRecord]) -> list[Outcome]:
        """Score the records in micro-batches, keeping input order."""
        decoded: list[InferenceRequest | Exception] = []
        for record in records:
            try:
                decoded.append(self._decode(record))
            except InvalidInput as exc:
                decoded.append(exc)
        await self._start_shadow()
        slots = asyncio.Semaphore(self._max_inflight)

        async def score(chunk: list[InferenceRequest | Exception]) -> list[Outcome]:
            async with slots:
                return await self._score_chunk(chunk)

        tasks = [asyncio.create_task(score(c)) for c in self._chunks(decoded)]
        outcomes: list[Outcome] = []
        try:
            for task in tasks:
                outcomes.extend(await task)
        except DependencyUnavailable as exc:
            # Only the batches before the first failure are finished, so the
            # runtime commits a prefix and rewinds to the first unfinished one.
            raise Stalled(outcomes, exc) from exc
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return outcomes

    def _decode(self, record: ConsumerRecord) -> InferenceRequest:
        request = decode_event(InferenceRequest, record.value)
        if request.features != self._manifest.names:
            raise InvalidInput(
                f"request {request.request_id} lists features {request.features}, "
                f"the model takes {self._manifest.names}"
            )
        # Checked here, not by the model: one request of another size would
        # make the whole micro-batch unstackable, and the model's refusal of a
        # lone one arrives in each backend's own error type.
        shapes = expected_shapes(self._manifest)
        sizes = {
            "image": request.image.shape,
            "clinical": [len(request.clinical)],
            "clinical_mask": [len(request.clinical_mask)],
        }
        for name, size in sizes.items():
            if size != shapes[name]:
                raise InvalidInput(
                    f"request {request.request_id} has {name} of shape {size}, "
                    f"the model takes {shapes[name]}"
                )
        return request

    def _chunks(
        self, decoded: list[InferenceRequest | Exception]
    ) -> list[list[InferenceRequest | Exception]]:
        size = self.batch_size
        chunks: list[list[InferenceRequest | Exception]] = []
        current: list[InferenceRequest | Exception] = []
        valid = 0
        for item in decoded:
            current.append(item)
            valid += not isinstance(item, Exception)
            if valid == size:
                chunks.append(current)
                current, valid = [], 0
        if current:
            chunks.append(current)
        return chunks

    async def _score_chunk(
        self, chunk: list[InferenceRequest | Exception]
    ) -> list[Outcome]:
        requests = [r for r in chunk if isinstance(r, InferenceRequest)]
        scores: dict[str, Outcome] = {}
        shadow: dict[str, Output] = {}
        if requests:
            batch = self._batch(requests)
            scores, shadow = await asyncio.gather(
                self._score_requests(requests, batch),
                self._shadow_scores(requests, batch),
            )
        outcomes: list[Outcome] = []
        for item in chunk:
            if isinstance(item, Exception):
                outcomes.append(item)
                continue
            outcome = scores[item.request_id]
            if isinstance(outcome, list) and item.request_id in shadow:
                outcome = [*outcome, shadow[item.request_id]]
            outcomes.append(outcome)
        return outcomes

    async def _score_requests(
        self, requests: list[InferenceRequest], batch: Batch | None = None
    ) -> dict[str, Outcome]:
        try:
            prediction = await self._backend.infer(batch or self._batch(requests))
        except InvalidInput as exc:
            if len(requests) == 1:
                return {requests[0].request_id: exc}
            logger.warning("model refused a batch of %d; isolating", len(requests))
            isolated: dict[str, Outcome] = {}
            for request in requests:
                isolated |= await self._score_requests([request])
            return isolated
        return {
            request.request_id: [
                self._output(request, prediction, i, self._backend.model_name)
            ]
            for i, request in enumerate(requests)
        }

    async def _shadow_scores(
        self, requests: list[InferenceRequest], batch: Batch
    ) -> dict[str, Output]:
        """The shadow model's scores, or none when it fails: it must not stall."""
        if self._shadow is None or not self._shadow_started:
            return {}
        try:
            prediction = await self._shadow.infer(batch)
        except CxrwatchError as exc:
            SHADOW_FAILURES.labels(self._shadow.model_name, type(exc).__name__).inc()
            logger.warning(
                "shadow model %s did not score %d requests: %s",
                self._shadow.model_name,
                len(requests),
                exc,
            )
            return {}
        name = self._shadow.model_name
        return {
            request.request_id: self._output(request, prediction, i, name, True)
            for i, request in enumerate(requests)
        }

    def _batch(self, requests: list[InferenceRequest]) -> Batch:
        return Batch(
            image=np.stack([r.image.to_array() for r in requests]).astype(
                np.float32, copy=False
            ),
            clinical=np.asarray([r.clinical for r in requests], dtype=np.float32),
            clinical_mask=np.asarray(
                [r.clinical_mask for r in requests], dtype=np.float32
            ),
        )

    def _output(
        self,
        request: InferenceRequest,
        prediction: Prediction,
        index: int,
        model_name: str,
        shadow: bool = False,
    ) -> Output:
        score = RiskScore(
            score_id=deterministic_id(
                "risk-score",
                request.request_id,
                model_name,
                prediction.model_version,
            ),
            request_id=request.request_id,
            radiograph_id=request.radiograph_id,
            patient_key=request.patient_key,
            acquired_at=request.acquired_at,
            as_of=request.as_of,
            p_critical=float(np.clip(prediction.p_critical[index, 0], 0.0, 1.0)),
            progression_risk=float(prediction.progression_risk[index, 0]),
            model_name=model_name,
            model_version=prediction.model_version,
            shadow=shadow,
            clinical_values=request.clinical_values,
            news2=request.news2,
            scored_at=datetime.now(UTC),
        )
        return Output(
            topic=topics.RISK_SCORES,
            key=score.patient_key,
            value=score.model_dump_json().encode(),
            ce_type="org.cxrwatch.risk-score.v1",
            ce_id=score.score_id,
            ce_source="cxrwatch/scorer",
        )


def build_backend(
    settings: ScorerSettings,
    manifest: FeatureManifest,
    model_name: str | None = None,
    version: str | None = None,
) -> InferenceBackend:
    """The backend the settings choose, for the primary model or another one."""
    name = model_name or settings.model_name
    if settings.backend == "onnxruntime":
        folder = version or settings.model_version
        path = Path(settings.model_repository, name, folder)
        return OnnxRuntimeBackend(
            path / "model.onnx",
            name,
            manifest,
            settings.onnx_threads,
            max_batch_size=settings.micro_batch_size or 32,
        )
    return TritonBackend(
        settings.triton_url,
        name,
        manifest,
        settings.triton_timeout_s,
        model_version=settings.triton_model_version if version is None else version,
        shared_memory=settings.triton_shared_memory,
        regions=settings.max_inflight_batches,
        batch_cap=settings.micro_batch_size or 32,
    )


def build_processor(settings: ScorerSettings) -> Scorer:
    """The scorer, with the manifest read from the model repository."""
    manifest = load_manifest(settings.manifest_path)
    if manifest.model != settings.model_name:
        raise ContractMismatch(
            f"manifest is for model {manifest.model!r}, "
            f"CXRWATCH_MODEL_NAME is {settings.model_name!r}"
        )
    shadow = None
    if settings.shadow_model_name:
        # The shadow answers the same requests, so it must take the same
        # inputs: it is checked against the primary model's manifest.
        shadow = build_backend(
            settings,
            manifest,
            settings.shadow_model_name,
            settings.shadow_model_version,
        )
    return Scorer(
        build_backend(settings, manifest),
        manifest,
        shadow=shadow,
        micro_batch_size=settings.micro_batch_size,
        max_inflight=settings.max_inflight_batches,
    )
