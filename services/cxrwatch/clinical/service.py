"""The clinical service: EHR observations in, recent values in Redis, updates out.

* Consumes ``ehr.observations.v1``: one FHIR R4 JSON resource (Observation,
  Patient or Bundle) or one HL7 v2 message (ORU^R01, ADT) per record, told apart
  by the ``content-type`` header and, failing that, by the first bytes.
* Stores each value that maps to a model feature, in the feature's canonical
  unit at its event time, in the :class:`~cxrwatch.core.observations.ObservationStore`
  (Redis), and birth date and sex as demographics. Storing is idempotent: a
  redelivered message changes nothing.
* Emits on ``clinical.updates.v1``, per message and patient, one
  ``ClinicalUpdate`` (key: the patient key; ``ce_type``
  ``org.cxrwatch.clinical-update.v1``) listing the values that changed the store
  (new, a newer version, or withdrawn), with an ``update_id`` derived from the
  message identity and the patient. Nothing when nothing changed.
* Commits through the stream runtime (:mod:`cxrwatch.core.stream`): a batch is
  read, written to Redis in one pipelined round trip, its outputs produced and
  acknowledged, and only then its offsets committed. Redis down stalls the batch
  without a commit and retries it with back-off.
* Dead-letters (``deadletter.v1``, with the reason) a record that cannot be read,
  that refers to no usable patient, or in which any value that maps to a
  feature is bad: a message is stored whole or not at all, and the reason lists
  every refused observation. A valid message with nothing usable (only unmapped
  codes, cancelled results) is counted as skipped, not dead-lettered.

A crash after the Redis write but before the produce would lose the update on
redelivery, since the store no longer changes. Each write therefore leaves a
receipt of its changes in Redis, released at the start of the next batch (the
runtime only asks for a new batch once the previous one is produced and
committed); a redelivery that finds its receipt emits the same update again.
"""

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import redis.asyncio
from aiokafka import ConsumerRecord
from prometheus_client import Counter as MetricCounter
from pydantic import Field, field_validator
from pydantic_settings import NoDecode
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from cxrwatch.clinical.codes import FeatureCodes
from cxrwatch.clinical.fhir import FhirReader
from cxrwatch.clinical.formats import source_format
from cxrwatch.clinical.hl7v2 import Hl7Reader
from cxrwatch.clinical.reading import Reading
from cxrwatch.clinical.times import FacilityClock
from cxrwatch.core import topics
from cxrwatch.core.errors import DependencyUnavailable, InvalidInput
from cxrwatch.core.events import ClinicalUpdate, ObservationValue
from cxrwatch.core.ids import deterministic_id, patient_ref
from cxrwatch.core.kafka import Output
from cxrwatch.core.manifest import FeatureManifest, load_manifest
from cxrwatch.core.metrics import SKIPPED
from cxrwatch.core.observations import ObservationStore, PatientWrite, StoredObservation
from cxrwatch.core.runner import run_stream_service
from cxrwatch.core.settings import ServiceSettings
from cxrwatch.core.stream import Outcome, Stalled

logger = logging.getLogger(__name__)

SERVICE = "clinical"
CE_TYPE = "org.cxrwatch.clinical-update.v1"
CE_SOURCE = "cxrwatch/clinical"

OBSERVATIONS = MetricCounter(
    "cxrwatch_clinical_observations_total",
    "Observations read by the clinical service, by outcome.",
    ["outcome"],
)
_STORED = OBSERVATIONS.labels("stored")
_UNCHANGED = OBSERVATIONS.labels("unchanged")


class ClinicalSettings(ServiceSettings):
    """Settings of the clinical service (``CXRWATCH_*`` environment variables)."""

    clinical_max_future_minutes: float = Field(
        60.0,
        ge=0,
        description="How far past now an observation time may lie (clock skew).",
    )
    observations_retention_hours: float = Field(
        168.0, gt=0, description="Hours of observations kept per patient."
    )
    clinical_receipt_ttl_s: int = Field(
        86400, gt=0, description="Seconds a receipt of unreleased changes is kept."
    )
    clinical_patient_identifier_system: str | None = Field(
        None,
        description="FHIR identifier system keying patients; unset: the Patient id.",
    )
    clinical_hl7_assigning_authority: str | None = Field(
        None, description="PID-3 assigning authority (CX.4) keying patients."
    )
    clinical_hl7_identifier_type: str | None = Field(
        None, description="PID-3 identifier type code (CX.5) keying patients, e.g. MR."
    )
    clinical_local_codes: dict[str, str] = Field(
        default_factory=dict,
        description='Local codes as JSON {"system|code": "feature"}.',
    )
    fhir_server_bases: Annotated[tuple[str, ...], NoDecode] = Field(
        (),
        description="Comma-separated base URLs of the FHIR servers whose Patient "
        "ids are this deployment's, e.g. https://ehr.example/fhir: a subject "
        "reference to an absolute URL under any other base is refused. Empty: "
        "only relative and urn: references are read.",
    )

    @field_validator("fhir_server_bases", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(base.strip() for base in value.split(",") if base.strip())
        return value


class ClinicalProcessor:
    """Reads EHR messages, stores their values and announces what changed."""

    name = SERVICE
    input_topics: Sequence[str] = (topics.EHR_OBSERVATIONS,)

    def __init__(
        self,
        settings: ClinicalSettings,
        *,
        manifest: FeatureManifest | None = None,
        redis_client: "redis.asyncio.Redis | None" = None,
    ) -> None:
        self.settings = settings
        self._manifest = manifest
        self._redis = redis_client
        self._owns_redis = redis_client is None
        self._store: ObservationStore | None = None
        self._readers: dict[str, Any] = {}
        self._unreleased: set[tuple[str, str]] = set()

    async def start(self) -> None:
        """Load the manifest, build the readers and the store; Redis is reached
        on the first batch, so that an outage stalls instead of crashing."""
        settings = self.settings
        manifest = self._manifest or load_manifest(settings.manifest_path)
        codes = FeatureCodes(manifest, settings.clinical_local_codes)
        clock = FacilityClock(settings.facility_timezone)
        self._readers = {
            "fhir-r4": FhirReader(
                codes,
                clock,
                identifier_system=settings.clinical_patient_identifier_system,
                server_bases=settings.fhir_server_bases,
            ),
            "hl7v2": Hl7Reader(
                codes,
                clock,
                assigning_authority=settings.clinical_hl7_assigning_authority,
                identifier_type=settings.clinical_hl7_identifier_type,
            ),
        }
        if self._redis is None:
            # A short retry rides out a blip; a longer outage is the stream
            # runtime's to wait out, with readiness down.
            self._redis = redis.asyncio.Redis.from_url(
                settings.redis_url,
                socket_timeout=5,
                socket_connect_timeout=5,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
            )
        self._store = ObservationStore(
            self._redis,
            manifest,
            prefix=settings.redis_prefix,
            retention_hours=settings.observations_retention_hours,
            receipt_ttl_s=settings.clinical_receipt_ttl_s,
        )
        logger.info(
            "clinical reads %d features, facility time zone %s, store prefix %r",
            len(manifest.features),
            settings.facility_timezone,
            settings.redis_prefix,
        )

    async def stop(self) -> None:
        """Close the Redis connection if this processor opened it."""
        if self._redis is not None and self._owns_redis:
            await self._redis.aclose()
            self._redis = None

    async def process(self, records: Sequence[ConsumerRecord]) -> list[Outcome]:
        """Read every record, store all values in one round trip, build outputs.

        Raises
        ------
        Stalled
            If Redis does not answer; no record of the batch is finished, and
            the whole batch is safe to repeat.
        """
        if self._store is None:
            raise RuntimeError("ClinicalProcessor.process called before start")
        try:
            await self._store.release(self._unreleased)
        except DependencyUnavailable as exc:
            raise Stalled([], exc) from exc
        self._unreleased = set()

        readings = [self._read(record) for record in records]
        plans = [_writes(r) if isinstance(r, Reading) else [] for r in readings]
        writes = [write for plan in plans for write in plan]
        try:
            changes = iter(await self._store.write(writes))
        except DependencyUnavailable as exc:
            raise Stalled([], exc) from exc

        outcomes: list[Outcome] = []
        tally: Counter[str] = Counter()
        for reading, plan in zip(readings, plans, strict=True):
            if isinstance(reading, Exception):
                outcomes.append(reading)
                tally["refused"] += 1
                continue
            outputs = self._outputs(reading, plan, changes)
            outcomes.append(outputs)
            tally["updates"] += len(outputs)
            tally[_skip_reason(reading, outputs) or "stored"] += 1
        logger.info(
            "clinical batch of %d: %d updates, %d stored, %d unchanged, "
            "%d without usable values, %d refused",
            len(records),
            tally["updates"],
            tally["stored"],
            tally["unchanged"],
            tally["nothing-usable"],
            tally["refused"],
        )
        return outcomes

    def _read(self, record: ConsumerRecord) -> Reading | Exception:
        try:
            value = record.value or b""
            reading: Reading = self._readers[source_format(record.headers, value)].read(
                value
            )
        except InvalidInput as exc:
            return exc
        except Exception as exc:  # a reader defect dead-letters the record
            logger.error(
                "clinical reader failed on %s[%d]@%d",
                record.topic,
                record.partition,
                record.offset,
                exc_info=exc,
            )
            return exc
        for reason, count in reading.ignored.items():
            OBSERVATIONS.labels(reason).inc(count)
        return self._refuse_future(reading) or reading

    def _refuse_future(self, reading: Reading) -> InvalidInput | None:
        """Refuse a message with a value timed in the future.

        Stored, such a value would become the patient's newest and push every
        real value outside the retention window: the patient would vanish.
        """
        limit = datetime.now(UTC) + timedelta(
            minutes=self.settings.clinical_max_future_minutes
        )
        late = [
            o
            for patient in reading.patients.values()
            for o in patient.observations
            if o.effective_at > limit
        ]
        if not late:
            return None
        first = min(late, key=lambda o: o.effective_at)
        return InvalidInput(
            f"message refused, nothing stored: {len(late)} value(s) timed in the "
            f"future, the first {first.feature} at {first.effective_at.isoformat()}; "
            "check the sender's clock (tolerance "
            f"CXRWATCH_CLINICAL_MAX_FUTURE_MINUTES="
            f"{self.settings.clinical_max_future_minutes:g})"
        )

    def _outputs(
        self, reading: Reading, plan: list[PatientWrite], changes: Any
    ) -> list[Output]:
        outputs = []
        for write in plan:
            changed = [o for o in next(changes) if o.value is not None]
            receipt = (write.patient_key, write.receipt or "")
            if receipt in self._unreleased:
                # The same message twice in one batch: the second found the
                # receipt the first left, which is no crash to recover from.
                changed = []
            _STORED.inc(len(changed))
            _UNCHANGED.inc(len(write.observations) - len(changed))
            if not changed:
                continue
            self._unreleased.add(receipt)
            outputs.append(_output(_update(reading, receipt[1], write, changed)))
            if logger.isEnabledFor(logging.DEBUG):  # patient_ref hashes
                logger.debug(
                    "clinical %s: %d values changed for %s",
                    reading.message_id,
                    len(changed),
                    patient_ref(write.patient_key),
                )
        return outputs


def _writes(reading: Reading) -> list[PatientWrite]:
    return [
        PatientWrite(
            patient.patient_key,
            patient.observations,
            patient.birth_date,
            patient.sex,
            receipt=update_id(reading, patient.patient_key),
        )
        for patient in reading.patients.values()
        if patient.observations or patient.has_demographics
    ]


def update_id(reading: Reading, patient_key: str) -> str:
    """The id of the update a message makes for a patient, the same on redelivery."""
    return deterministic_id("clinical-update", reading.message_id, patient_key)


def _update(
    reading: Reading,
    update_id: str,
    write: PatientWrite,
    changed: list[StoredObservation],
) -> ClinicalUpdate:
    values = [
        ObservationValue(
            feature=o.feature,
            value=o.value,
            unit=o.unit,
            effective_at=o.effective_at,
            source_id=o.source_id,
            status=o.status,
        )
        for o in changed
        if o.value is not None
    ]
    times = [o.effective_at for o in changed]
    return ClinicalUpdate(
        update_id=update_id,
        patient_key=write.patient_key,
        source_format=reading.source_format,
        observations=values,
        earliest_effective_at=min(times),
        latest_effective_at=max(times),
    )


def _output(update: ClinicalUpdate) -> Output:
    return Output(
        topic=topics.CLINICAL_UPDATES,
        key=update.patient_key,
        value=update.model_dump_json().encode(),
        ce_type=CE_TYPE,
        ce_id=update.update_id,
        ce_source=CE_SOURCE,
    )


def _skip_reason(reading: Reading, outputs: list[Output]) -> str | None:
    if outputs:
        return None
    if reading.observation_count:
        reason = "unchanged"
    elif reading.usable:
        return None  # demographics only: stored, nothing to announce
    else:
        reason = "nothing-usable"
    SKIPPED.labels(SERVICE, reason).inc()
    return reason


def main() -> None:
    """Read settings from the environment, create topics, run the service."""
    run_stream_service(ClinicalProcessor, ClinicalSettings())
