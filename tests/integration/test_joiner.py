"""The joiner against the real Redis: as-of joins, overtaking data, late data."""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import redis.asyncio as aioredis
from aiokafka.structs import ConsumerRecord
from cxrwatch.core import topics
from cxrwatch.core.events import (
    ClinicalUpdate,
    InferenceRequest,
    ObservationValue,
    Radiograph,
    Tensor,
)
from cxrwatch.core.manifest import load_manifest
from cxrwatch.core.observations import ObservationStore, StoredObservation
from cxrwatch.joiner.service import Joiner, JoinerSettings

pytestmark = pytest.mark.integration

MODELS = Path(__file__).parents[2] / "models"
MANIFEST = load_manifest(MODELS / "cxr_fusion" / "features.json")
T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PATIENT = "CXR-JOIN-1"


def spo2(value: float, at: datetime, source: str) -> StoredObservation:
    return StoredObservation("spo2", value, "%", at, source)


def record(topic: str, offset: int, body: bytes) -> ConsumerRecord:
    return ConsumerRecord(
        topic, 0, offset, 0, 0, PATIENT.encode(), body, None, 1, 1, []
    )


def radiograph_record(
    offset: int = 0, birth_date: str | None = None, sex: str | None = None
) -> ConsumerRecord:
    image = Radiograph(
        radiograph_id="rad-1",
        patient_key=PATIENT,
        study_instance_uid="1.2",
        series_instance_uid="1.2.3",
        sop_instance_uid="1.2.3.4",
        acquired_at=T,
        modality="CR",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        photometric_interpretation="MONOCHROME1",
        image=Tensor.from_array(np.full((1, 224, 224), 0.5, dtype=np.float32)),
        patient_birth_date=birth_date,
        patient_sex=sex,
    )
    return record(topics.IMAGING_RADIOGRAPHS, offset, image.model_dump_json().encode())


async def test_a_patient_the_ehr_has_not_described_takes_age_and_sex_from_the_header(
    redis_url: str, redis_prefix: str
) -> None:
    settings = JoinerSettings(
        redis_url=redis_url, redis_prefix=redis_prefix, model_repository=MODELS
    )
    joiner = Joiner(settings, MANIFEST)
    client = aioredis.from_url(redis_url)
    try:
        [request] = requests_of(
            await joiner.process([radiograph_record(birth_date="1946-03-02", sex="F")])
        )
        store = ObservationStore(client, MANIFEST, prefix=redis_prefix)
        await store.put_demographics(PATIENT, birth_date=date(1956, 3, 2), sex="M")
        [ehr_first] = requests_of(
            await joiner.process([radiograph_record(birth_date="1946-03-02", sex="F")])
        )
    finally:
        await joiner.stop()
        await client.aclose()
    # Born 1946-03-02: 80 at T by the header; the EHR's 1956 birth date wins once known.
    assert request.clinical_values["age"] == pytest.approx(80.0, abs=0.01)
    assert request.clinical_values["sex"] == 0.0
    age_index = MANIFEST.names.index("age")
    assert request.clinical_mask[age_index] == 1.0
    assert ehr_first.clinical_values["age"] == pytest.approx(70.0, abs=0.01)
    assert ehr_first.clinical_values["sex"] == 1.0


def requests_of(outcomes: list) -> list[InferenceRequest]:
    [outputs] = outcomes
    assert isinstance(outputs, list), outputs
    return [InferenceRequest.model_validate_json(o.value) for o in outputs]


async def test_joins_as_of_acquisition_and_as_of_data_that_overtook_the_image(
    redis_url: str, redis_prefix: str
) -> None:
    client = aioredis.from_url(redis_url)
    store = ObservationStore(client, MANIFEST, prefix=redis_prefix)
    await store.put_demographics(PATIENT, birth_date=date(1956, 3, 2), sex="M")
    await store.put(
        PATIENT,
        [
            spo2(96, T - timedelta(hours=1), "o1"),
            spo2(88, T + timedelta(hours=2), "o2"),
            spo2(80, T - timedelta(hours=30), "o0"),  # outside the 24 h look-back
        ],
    )
    settings = JoinerSettings(
        redis_url=redis_url, redis_prefix=redis_prefix, model_repository=MODELS
    )
    joiner = Joiner(settings, MANIFEST)
    try:
        first = requests_of(await joiner.process([radiograph_record()]))
        assert [(r.as_of, r.clinical_values["spo2"]) for r in first] == [
            (T, 96.0),
            (T + timedelta(hours=2), 88.0),
        ]
        # Born 1956-03-02: exactly 70 years old at T.
        assert first[0].clinical_values["age"] == pytest.approx(70.0, abs=0.01)
        assert first[0].clinical_values["sex"] == 1.0
        spo2_index = MANIFEST.names.index("spo2")
        assert first[0].clinical_mask[spo2_index] == 1.0
        assert first[0].clinical[spo2_index] == pytest.approx(
            MANIFEST.by_name["spo2"].normalise(96.0)
        )
        resp_index = MANIFEST.names.index("resp_rate")
        assert (first[0].clinical[resp_index], first[0].clinical_mask[resp_index]) == (
            0.0,
            0.0,
        )

        # A redelivered radiograph produces the same requests, ids included.
        again = requests_of(await joiner.process([radiograph_record()]))
        assert [r.request_id for r in again] == [r.request_id for r in first]

        # A late value inside T's look-back re-scores the image as of T.
        late_at = T - timedelta(minutes=30)
        await store.put(PATIENT, [spo2(93, late_at, "o3")])
        update = ClinicalUpdate(
            update_id="u1",
            patient_key=PATIENT,
            source_format="fhir-r4",
            observations=[
                ObservationValue(
                    feature="spo2",
                    value=93,
                    unit="%",
                    effective_at=late_at,
                    source_id="o3",
                    status="final",
                )
            ],
            earliest_effective_at=late_at,
            latest_effective_at=late_at,
        )
        rescored = requests_of(
            await joiner.process(
                [record(topics.CLINICAL_UPDATES, 1, update.model_dump_json().encode())]
            )
        )
        assert [(r.as_of, r.clinical_values["spo2"]) for r in rescored] == [(T, 93.0)]
        assert rescored[0].request_id != first[0].request_id
    finally:
        await joiner.stop()
        await client.aclose()
