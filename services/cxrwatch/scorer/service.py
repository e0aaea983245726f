"""Scorer: inference requests in, risk scores out.

* Consumes ``inference.requests.v1``; takes what one poll returns (up to
  ``CXRWATCH_BATCH_MAX_RECORDS``) and sends it to the model in micro-batches
  of at most the model's ``max_batch_size`` (Triton batches further on its
  side with its dynamic batcher).
* Emits one ``RiskScore`` per request on ``risk.scores.v1``, in input order,
  so one patient's scores keep their order. The score id derives from the
  request id and the model version: a redelivered request scores the same id.
* Commits through the shared runtime, after the scores are acknowledged.
* Dead-letters requests that do not decode, and requests the model refuses
  (isolated by re-sending the batch one request at a time).
* When Triton is unreachable or the model is not ready, the batch stops
  there, nothing after it is committed, and the runtime retries with back-off.
"""

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
from aiokafka import ConsumerRecord
from pydantic import Field

from cxrwatch.core import topics
from cxrwatch.core.errors import ContractMismatch, DependencyUnavailable, InvalidInput
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
    TritonBackend,
)

logger = logging.getLogger(__name__)


class ScorerSettings(ServiceSettings):
    """Settings of the scorer."""

    backend: Literal["triton", "onnxruntime"] = Field(
        "triton", description="Where the model runs."
    )
    triton_url: str = Field("127.0.0.1:8001", description="Triton gRPC address.")
    triton_timeout_s: float = Field(30.0, gt=0, description="Per-request timeout.")
    onnx_threads: int = Field(2, ge=1, description="Threads for in-process ONNX.")
    model_version: str = Field("1", description="Version folder for in-process ONNX.")


class Scorer:
    """The scorer's processor."""

    name = "scorer"
    input_topics = (topics.INFERENCE_REQUESTS,)

    def __init__(self, backend: InferenceBackend, manifest: FeatureManifest) -> None:
        self._backend = backend
        self._manifest = manifest

    async def start(self) -> None:
        """Wait for the model server; refuse to run on a contract mismatch."""
        delay = 0.5
        while True:
            try:
                await self._backend.start()
                return
            except DependencyUnavailable as exc:
                logger.warning("scorer waiting for the model: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def stop(self) -> None:
        """Close the backend."""
        await self._backend.close()

    async def process(self, records: Sequence[ConsumerRecord]) -> list[Outcome]:
        """Score the records in micro-batches, keeping input order."""
        decoded: list[InferenceRequest | Exception] = []
        for record in records:
            try:
                decoded.append(self._decode(record))
            except InvalidInput as exc:
                decoded.append(exc)
        outcomes: list[Outcome] = []
        for chunk in self._chunks(decoded):
            try:
                outcomes.extend(await self._score_chunk(chunk))
            except DependencyUnavailable as exc:
                raise Stalled(outcomes, exc) from exc
        return outcomes

    def _decode(self, record: ConsumerRecord) -> InferenceRequest:
        request = decode_event(InferenceRequest, record.value)
        if request.features != self._manifest.names:
            raise InvalidInput(
                f"request {request.request_id} lists features {request.features}, "
                f"the model takes {self._manifest.names}"
            )
        return request

    def _chunks(
        self, decoded: list[InferenceRequest | Exception]
    ) -> list[list[InferenceRequest | Exception]]:
        size = self._backend.max_batch_size
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
        if requests:
            scores = await self._score_requests(requests)
        return [
            item if isinstance(item, Exception) else scores[item.request_id]
            for item in chunk
        ]

    async def _score_requests(
        self, requests: list[InferenceRequest]
    ) -> dict[str, Outcome]:
        try:
            batch = self._batch(requests)
            prediction = await self._backend.infer(batch)
        except InvalidInput as exc:
            if len(requests) == 1:
                return {requests[0].request_id: exc}
            logger.warning("model refused a batch of %d; isolating", len(requests))
            isolated: dict[str, Outcome] = {}
            for request in requests:
                isolated |= await self._score_requests([request])
            return isolated
        return {
            request.request_id: [self._output(request, prediction, i)]
            for i, request in enumerate(requests)
        }

    def _batch(self, requests: list[InferenceRequest]) -> Batch:
        return Batch(
            image=np.stack([r.image.to_array() for r in requests]).astype(np.float32),
            clinical=np.asarray([r.clinical for r in requests], dtype=np.float32),
            clinical_mask=np.asarray(
                [r.clinical_mask for r in requests], dtype=np.float32
            ),
        )

    def _output(
        self, request: InferenceRequest, prediction: Prediction, index: int
    ) -> Output:
        score = RiskScore(
            score_id=deterministic_id(
                "risk-score",
                request.request_id,
                self._backend.model_name,
                prediction.model_version,
            ),
            request_id=request.request_id,
            radiograph_id=request.radiograph_id,
            patient_key=request.patient_key,
            acquired_at=request.acquired_at,
            as_of=request.as_of,
            p_critical=float(np.clip(prediction.p_critical[index, 0], 0.0, 1.0)),
            progression_risk=float(prediction.progression_risk[index, 0]),
            model_name=self._backend.model_name,
            model_version=prediction.model_version,
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
    settings: ScorerSettings, manifest: FeatureManifest
) -> InferenceBackend:
    """The backend the settings choose."""
    if settings.backend == "onnxruntime":
        path = Path(
            settings.model_repository, settings.model_name, settings.model_version
        )
        return OnnxRuntimeBackend(
            path / "model.onnx", settings.model_name, manifest, settings.onnx_threads
        )
    return TritonBackend(
        settings.triton_url, settings.model_name, manifest, settings.triton_timeout_s
    )


def build_processor(settings: ScorerSettings) -> Scorer:
    """The scorer, with the manifest read from the model repository."""
    manifest = load_manifest(settings.manifest_path)
    if manifest.model != settings.model_name:
        raise ContractMismatch(
            f"manifest is for model {manifest.model!r}, "
            f"CXRWATCH_MODEL_NAME is {settings.model_name!r}"
        )
    return Scorer(build_backend(settings, manifest), manifest)
