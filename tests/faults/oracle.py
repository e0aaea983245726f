"""What a fault-free pipeline must produce for a scenario, computed in process.

The oracle runs the services' own processors (imaging, clinical, joiner,
scorer on ONNX Runtime, alerter) one after another in this process, wave by
wave, with no broker, no stream runtime, no crash and no retry: each record
is handed over exactly once, in delivery order. What comes out is the set of
output ids every topic must hold, and the alerts that must exist.

It is independent of what the fault suite tests (the stream runtime, Kafka,
redelivery, outages, restarts) but not of the processors' logic; that logic
is checked against the scenario's design separately: the oracle's alerts must
fall on the patients the scenario makes deteriorate, and on no other.

The pipeline scores on Triton and the oracle on ONNX Runtime in process, with
the same ONNX file; ids do not depend on the probabilities, and
``closest_to_threshold`` tells how near a decision came to flipping on a
rounding difference between the two.
"""

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiokafka import ConsumerRecord
from cxrwatch.alerter.service import AlerterSettings
from cxrwatch.alerter.service import build_processor as build_alerter
from cxrwatch.cli.publish import CONTENT_TYPES, TOPICS
from cxrwatch.clinical.service import ClinicalProcessor, ClinicalSettings
from cxrwatch.core import topics
from cxrwatch.core.kafka import Output
from cxrwatch.core.stream import Outcome
from cxrwatch.imaging.service import ImagingProcessor, ImagingSettings
from cxrwatch.joiner.service import JoinerSettings
from cxrwatch.joiner.service import build_processor as build_joiner
from cxrwatch.scorer.service import ScorerSettings
from cxrwatch.scorer.service import build_processor as build_scorer

logger = logging.getLogger(__name__)

BATCH = 64
OUTPUT_TOPICS = (
    topics.IMAGING_RADIOGRAPHS,
    topics.CLINICAL_UPDATES,
    topics.INFERENCE_REQUESTS,
    topics.RISK_SCORES,
    topics.ALERTS,
)


class _Processor(Protocol):
    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def process(self, records: Sequence[ConsumerRecord]) -> list[Outcome]: ...


@dataclass
class Expected:
    """The outputs a fault-free run of the scenario produces."""

    ids: dict[str, set[str]] = field(
        default_factory=lambda: {topic: set() for topic in OUTPUT_TOPICS}
    )
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    p_critical: dict[str, float] = field(default_factory=dict)  # by score id
    scores: int = 0
    closest_to_threshold: float = 1.0

    @property
    def alert_ids(self) -> set[str]:
        """Ids of the alerts that must exist."""
        return set(self.alerts)

    def alerted_patients(self) -> set[str]:
        """Patients with at least one alert."""
        return {alert["patient_key"] for alert in self.alerts.values()}


def scenario_steps(index: Path) -> list[dict[str, Any]]:
    """The steps of a scenario, in delivery order."""
    steps: list[dict[str, Any]] = json.loads(index.read_text())["steps"]
    return steps


def input_output(index: Path, step: dict[str, Any], ce_id: str) -> Output:
    """The record a publisher puts on the input topic for ``step``."""
    kind = step["kind"]
    return Output(
        topic=TOPICS[kind],
        key=step["key"],
        value=(index.parent / step["path"]).read_bytes(),
        ce_type=f"org.cxrwatch.{kind}.v1",
        ce_id=ce_id,
        ce_source="cxrwatch/faults",
        content_type=CONTENT_TYPES[kind],
    )


def as_record(output: Output, offset: int) -> ConsumerRecord:
    """An output as the next service would consume it."""
    key = output.key.encode()
    return ConsumerRecord(
        topic=output.topic,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key,
        value=output.value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(output.value),
        headers=output.headers(),
    )


def compute_expected(
    index: Path, redis_url: str, redis_prefix: str, models: Path
) -> Expected:
    """Run the scenario through the processors in process; see the module."""
    return asyncio.run(_compute(index, redis_url, redis_prefix, models))


async def _compute(
    index: Path, redis_url: str, redis_prefix: str, models: Path
) -> Expected:
    common = {
        "redis_url": redis_url,
        "model_repository": models,
        "facility_timezone": "UTC",
    }
    imaging = ImagingProcessor(
        ImagingSettings(**common, decode_workers=1)  # type: ignore[arg-type]
    )
    clinical = ClinicalProcessor(
        ClinicalSettings(**common, redis_prefix=redis_prefix)  # type: ignore[arg-type]
    )
    joiner = build_joiner(
        JoinerSettings(**common, redis_prefix=redis_prefix)  # type: ignore[arg-type]
    )
    scorer = build_scorer(
        ScorerSettings(**common, backend="onnxruntime")  # type: ignore[arg-type]
    )
    alerter = build_alerter(
        AlerterSettings(**common, redis_prefix=redis_prefix)  # type: ignore[arg-type]
    )
    stages: list[_Processor] = [imaging, clinical, joiner, scorer, alerter]
    for stage in stages:
        await stage.start()
    expected = Expected()
    thresholds = AlerterSettings(**common).band_thresholds  # type: ignore[arg-type]
    try:
        steps = scenario_steps(index)
        for wave in sorted({step["wave"] for step in steps}):
            records = [
                as_record(input_output(index, step, f"load-{n}"), n)
                for n, step in enumerate(steps)
                if step["wave"] == wave
            ]
            images = [r for r in records if r.topic == topics.DICOM_INSTANCES]
            ehr = [r for r in records if r.topic == topics.EHR_OBSERVATIONS]
            joined = await _run(imaging, images) + await _run(clinical, ehr)
            requests = await _run(joiner, _records(joined))
            scores = await _run(scorer, _records(requests))
            alerts = await _run(alerter, _records(scores))
            for output in joined + requests + scores + alerts:
                expected.ids[output.topic].add(output.ce_id)
            for output in scores:
                p = json.loads(output.value)["p_critical"]
                expected.p_critical[output.ce_id] = p
                closest = min(abs(p - t) for t in thresholds)
                expected.closest_to_threshold = min(
                    expected.closest_to_threshold, closest
                )
            expected.scores += len(scores)
            for output in alerts:
                expected.alerts[output.ce_id] = json.loads(output.value)
    finally:
        for stage in stages:
            await stage.stop()
    logger.info(
        "oracle: %d scores, %d alerts, closest p to a band edge %.3f",
        expected.scores,
        len(expected.alerts),
        expected.closest_to_threshold,
    )
    return expected


def _records(outputs: list[Output]) -> list[ConsumerRecord]:
    return [as_record(output, n) for n, output in enumerate(outputs)]


async def _run(processor: _Processor, records: list[ConsumerRecord]) -> list[Output]:
    """Every output of ``records``, in order; the scenario must be clean."""
    outputs: list[Output] = []
    for start in range(0, len(records), BATCH):
        batch = records[start : start + BATCH]
        for record, outcome in zip(batch, await processor.process(batch), strict=True):
            if isinstance(outcome, Exception):
                raise AssertionError(
                    f"the oracle's {processor.name} refused {record.topic}"
                    f"@{record.offset}: {outcome!r}; the scenario must be clean"
                ) from outcome
            outputs += outcome
    return outputs
