"""Joiner: pairs each radiograph with the patient's clinical data as of a time.

* Consumes ``imaging.radiographs.v1`` and ``clinical.updates.v1``, both keyed
  by patient, so one patient's events reach one joiner in order.
* A radiograph acquired at T is joined with each feature's latest value in
  [T - look-back, T] (per-feature look-back from the manifest) and emitted on
  ``inference.requests.v1``; it is remembered for the validity window.
* Age and sex come from the EHR (FHIR Patient, HL7 PID); where it has none
  yet, from the image's header (birth date, sex), so a patient imaged before
  any EHR message is not scored as the average patient.
* Values already stored for a time after T (they overtook the image) score it
  once more, as of the newest of them, unless a later image supersedes it.
* A clinical update re-joins the patient's remembered radiographs:
  - values for a time before T that fall inside T's look-back (late data)
    re-score that radiograph as of T;
  - values after T and within T + validity re-score the latest radiograph
    acquired before them, as of the newest such value.
* Request ids derive from the radiograph, the as-of time and the vector, so a
  redelivered input emits the same request again.
* Commits through the shared runtime, after every request is acknowledged.
  Undecodable events are dead-lettered; Redis down pauses the partition.
"""

import hashlib
import logging
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Literal

import redis.asyncio as aioredis
from aiokafka import ConsumerRecord
from pydantic import Field

from cxrwatch.core import topics
from cxrwatch.core.errors import InvalidInput
from cxrwatch.core.events import (
    ClinicalUpdate,
    InferenceRequest,
    Radiograph,
    decode_event,
)
from cxrwatch.core.ids import deterministic_id, patient_ref
from cxrwatch.core.kafka import Output
from cxrwatch.core.manifest import FeatureManifest, load_manifest
from cxrwatch.core.news2 import news2
from cxrwatch.core.observations import ObservationStore, with_demographics
from cxrwatch.core.settings import ServiceSettings
from cxrwatch.core.stream import Outcome, process_each
from cxrwatch.joiner.recent import RecentRadiographs
from cxrwatch.joiner.rescore import rescore_times
from cxrwatch.joiner.vector import build_vector

logger = logging.getLogger(__name__)


class JoinerSettings(ServiceSettings):
    """Settings of the joiner."""

    validity_hours: float = Field(
        48.0, gt=0, description="How long after acquisition new data re-scores."
    )


class Joiner:
    """The joiner's processor."""

    name = "joiner"
    input_topics = (topics.IMAGING_RADIOGRAPHS, topics.CLINICAL_UPDATES)

    def __init__(self, settings: JoinerSettings, manifest: FeatureManifest) -> None:
        self._settings = settings
        self._manifest = manifest
        self._validity = timedelta(hours=settings.validity_hours)
        self._longest_lookback = timedelta(
            hours=max(
                f.lookback_hours
                for f in manifest.features
                if f.source != "demographics"
            )
        )
        self._redis = aioredis.from_url(settings.redis_url)
        self._observations = ObservationStore(
            self._redis, manifest, prefix=settings.redis_prefix
        )
        self._radiographs = RecentRadiographs(
            self._redis, self._validity, prefix=settings.redis_prefix
        )

    async def start(self) -> None:
        """Nothing to open: Redis connects on first use."""

    async def stop(self) -> None:
        """Close the Redis pool."""
        await self._redis.aclose()

    async def process(self, records: Sequence[ConsumerRecord]) -> list[Outcome]:
        """Join each record on its own; a bad one is dead-lettered alone."""
        return await process_each(records, self._handle)

    async def _handle(self, record: ConsumerRecord) -> list[Output]:
        if record.topic == topics.IMAGING_RADIOGRAPHS:
            radiograph = decode_event(Radiograph, record.value)
            await self._radiographs.remember(radiograph)
            return [self._output(r) for r in await self._join_new(radiograph)]
        if record.topic == topics.CLINICAL_UPDATES:
            update = decode_event(ClinicalUpdate, record.value)
            return [self._output(r) for r in await self._rejoin(update)]
        raise InvalidInput(f"the joiner does not consume topic {record.topic!r}")

    async def _join_new(self, radiograph: Radiograph) -> list[InferenceRequest]:
        """Score a new radiograph as of its time, and as of data already after it.

        Clinical data often overtakes the image (decoding takes longer than
        parsing an observation): values already stored for after T must
        re-score the image just as they would had they arrived after it.
        """
        acquired = radiograph.acquired_at
        requests = [await self._join(radiograph, acquired, "radiograph")]
        newest = await self._observations.latest_effective(
            radiograph.patient_key, acquired, acquired + self._validity
        )
        if newest is None:
            return requests
        between = await self._radiographs.acquired_between(
            radiograph.patient_key, acquired, newest
        )
        if all(r.acquired_at <= acquired for r in between):
            requests.append(await self._join(radiograph, newest, "radiograph"))
        return requests

    async def _rejoin(self, update: ClinicalUpdate) -> list[InferenceRequest]:
        candidates = await self._radiographs.acquired_between(
            update.patient_key,
            update.earliest_effective_at - self._validity,
            update.latest_effective_at + self._longest_lookback,
        )
        affected = rescore_times(
            candidates,
            [o.effective_at for o in update.observations],
            self._longest_lookback,
            self._validity,
        )
        requests = [
            await self._join(radiograph, as_of, "clinical-update")
            for radiograph, as_of in affected
        ]
        logger.info(
            "joiner re-joined %d radiograph(s) for %s",
            len(requests),
            patient_ref(update.patient_key),
        )
        return requests

    async def _join(
        self,
        radiograph: Radiograph,
        as_of: datetime,
        trigger: Literal["radiograph", "clinical-update"],
    ) -> InferenceRequest:
        snapshot = with_demographics(
            await self._observations.snapshot(radiograph.patient_key, as_of),
            _header_birth_date(radiograph),
            radiograph.patient_sex,
        )
        vector = build_vector(self._manifest, snapshot)
        fingerprint = hashlib.sha256(
            repr((vector.values, vector.mask)).encode()
        ).hexdigest()
        return InferenceRequest(
            request_id=deterministic_id(
                "inference-request",
                radiograph.radiograph_id,
                as_of.isoformat(),
                fingerprint,
            ),
            radiograph_id=radiograph.radiograph_id,
            patient_key=radiograph.patient_key,
            acquired_at=radiograph.acquired_at,
            as_of=as_of,
            trigger=trigger,
            image=radiograph.image,
            features=self._manifest.names,
            clinical=vector.values,
            clinical_mask=vector.mask,
            clinical_values=vector.raw,
            news2=news2(vector.raw),
        )

    def _output(self, request: InferenceRequest) -> Output:
        return Output(
            topic=topics.INFERENCE_REQUESTS,
            key=request.patient_key,
            value=request.model_dump_json().encode(),
            ce_type="org.cxrwatch.inference-request.v1",
            ce_id=request.request_id,
            ce_source="cxrwatch/joiner",
        )


def _header_birth_date(radiograph: Radiograph) -> date | None:
    if radiograph.patient_birth_date is None:
        return None
    return date.fromisoformat(radiograph.patient_birth_date)


def build_processor(settings: JoinerSettings) -> Joiner:
    """The joiner, with the manifest read from the model repository."""
    return Joiner(settings, load_manifest(settings.manifest_path))
