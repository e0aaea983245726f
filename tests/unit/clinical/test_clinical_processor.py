"""The clinical processor over a real Redis: outputs, duplicates, receipts, refusals.

Redis comes from the shared fixtures (``tests/conftest.py``): 127.0.0.1:6379 unless
``CXRWATCH_TEST_REDIS_URL`` says otherwise, a key prefix per test, deleted after.
"""

import json
import logging
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio
from aiokafka import ConsumerRecord
from cxrwatch.clinical.service import CE_TYPE, ClinicalProcessor, ClinicalSettings
from cxrwatch.core import topics
from cxrwatch.core.errors import InvalidInput, MissingPatient
from cxrwatch.core.events import ClinicalUpdate
from cxrwatch.core.metrics import SKIPPED
from cxrwatch.core.observations import ObservationStore
from cxrwatch.core.stream import Stalled
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

FHIR = [("content-type", b"application/fhir+json")]
HL7 = [("content-type", b"x-application/hl7-v2+er7")]

HEART_RATE = {
    "resourceType": "Observation",
    "id": "hr-1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
    "subject": {"reference": "Patient/p1"},
    "effectiveDateTime": "2021-03-09T14:30:00",
    "valueQuantity": {
        "value": 112,
        "system": "http://unitsofmeasure.org",
        "code": "/min",
    },
}
ORU = "\n".join(
    [
        "MSH|^~\\&|MONITOR|WARD7|CXRWATCH|HOSP|20210309143500||ORU^R01|M1|P|2.5.1",
        "PID|1||MRN9^^^HOSP^MR||DOE^JOHN||19500201|M",
        "OBR|1|PL1|FI1|85353-1^Vitals^LN|||20210309143000",
        "OBX|1|NM|9279-1^Resp rate^LN||24|/min|||||F",
        "OBX|2|NM|8310-5^Temp^LN||101.3|[degF]|||||F",
    ]
).encode()


def record(value: bytes, headers=FHIR, offset: int = 0) -> ConsumerRecord:
    return ConsumerRecord(
        topic=topics.EHR_OBSERVATIONS,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=None,
        value=value,
        checksum=None,
        serialized_key_size=0,
        serialized_value_size=len(value),
        headers=headers,
    )


def fhir(resource: dict) -> ConsumerRecord:
    return record(json.dumps(resource).encode())


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    connection = redis.asyncio.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()


@pytest.fixture
def settings(redis_prefix: str) -> ClinicalSettings:
    return ClinicalSettings(
        redis_prefix=redis_prefix, facility_timezone="America/New_York"
    )


async def started(settings, manifest, client) -> ClinicalProcessor:
    processor = ClinicalProcessor(settings, manifest=manifest, redis_client=client)
    await processor.start()
    return processor


@pytest.fixture
async def processor(settings, manifest, client) -> ClinicalProcessor:
    return await started(settings, manifest, client)


def update_of(output) -> ClinicalUpdate:
    return ClinicalUpdate.model_validate_json(output.value)


async def test_a_stored_value_is_announced_once(processor, settings, manifest, client):
    [outputs] = await processor.process([fhir(HEART_RATE)])
    [output] = outputs
    assert (output.topic, output.key, output.ce_type) == (
        topics.CLINICAL_UPDATES,
        "p1",
        CE_TYPE,
    )
    update = update_of(output)
    assert output.ce_id == update.update_id
    [value] = update.observations
    assert (value.feature, value.value, value.unit) == ("heart_rate", 112.0, "/min")
    assert value.effective_at == datetime(2021, 3, 9, 19, 30, tzinfo=UTC)

    store = ObservationStore(client, manifest, prefix=settings.redis_prefix)
    snapshot = await store.snapshot("p1", datetime(2021, 3, 9, 20, 0, tzinfo=UTC))
    assert snapshot.values["heart_rate"] == 112.0

    assert await processor.process([fhir(HEART_RATE)]) == [[]]


async def test_the_same_message_twice_in_one_batch_is_announced_once(processor):
    outcomes = await processor.process([fhir(HEART_RATE), fhir(HEART_RATE)])
    assert [len(outputs) for outputs in outcomes] == [1, 0]


async def test_a_redelivery_after_a_crash_announces_the_same_update(
    processor, settings, manifest, client
):
    [[first]] = await processor.process([fhir(HEART_RATE)])
    # The first worker died before producing; another gets the record again.
    successor = await started(settings, manifest, client)
    [[again]] = await successor.process([fhir(HEART_RATE)])
    assert again.value == first.value
    # Once that batch is committed (the next batch starts), it is a duplicate.
    assert await successor.process([fhir(HEART_RATE)]) == [[]]


async def test_an_amendment_is_announced(processor):
    await processor.process([fhir(HEART_RATE)])
    amended = HEART_RATE | {
        "status": "amended",
        "valueQuantity": {
            "value": 120,
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
    }
    [[output]] = await processor.process([fhir(amended)])
    [value] = update_of(output).observations
    assert (value.value, value.status) == (120.0, "amended")


async def test_a_withdrawal_is_announced_with_the_value_it_removes(processor):
    await processor.process([fhir(HEART_RATE)])
    withdrawn = HEART_RATE | {"status": "entered-in-error"}
    [[output]] = await processor.process([fhir(withdrawn)])
    [value] = update_of(output).observations
    assert (value.value, value.status) == (112.0, "entered-in-error")


async def test_hl7_with_line_feeds(processor):
    [[output]] = await processor.process([record(ORU, HL7)])
    update = update_of(output)
    assert update.patient_key == "MRN9"
    assert update.source_format == "hl7v2"
    values = {v.feature: v.value for v in update.observations}
    assert values == {"resp_rate": 24.0, "temperature": pytest.approx(38.5, abs=0.05)}


async def test_bad_records_become_outcomes_and_do_not_stop_the_batch(processor):
    bad_unit = HEART_RATE | {"valueQuantity": {"value": 112, "unit": "furlongs"}}
    no_subject = {k: v for k, v in HEART_RATE.items() if k != "subject"}
    outcomes = await processor.process(
        [
            record(b'{"resourceType": "Observ'),
            fhir(bad_unit),
            fhir(no_subject),
            fhir(HEART_RATE),
        ]
    )
    assert isinstance(outcomes[0], InvalidInput)
    assert "furlongs" in str(outcomes[1])
    assert isinstance(outcomes[2], MissingPatient)
    assert len(outcomes[3]) == 1


async def test_nothing_usable_is_skipped_not_refused(processor):
    unmapped = HEART_RATE | {
        "code": {"coding": [{"system": "http://loinc.org", "code": "2951-2"}]}
    }
    before = SKIPPED.labels("clinical", "nothing-usable")._value.get()
    assert await processor.process([fhir(unmapped)]) == [[]]
    assert SKIPPED.labels("clinical", "nothing-usable")._value.get() == before + 1


async def test_demographics_are_stored_without_an_update(
    processor, settings, manifest, client
):
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "gender": "male",
        "birthDate": "1960-03-09",
    }
    assert await processor.process([fhir(patient)]) == [[]]
    store = ObservationStore(client, manifest, prefix=settings.redis_prefix)
    snapshot = await store.snapshot("p1", datetime(2021, 3, 9, tzinfo=UTC))
    assert snapshot.values["sex"] == 1.0
    assert snapshot.values["age"] == pytest.approx(61.0, abs=0.01)


async def test_one_update_per_patient_of_a_bundle(processor):
    other = HEART_RATE | {"id": "hr-2", "subject": {"reference": "Patient/p2"}}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": HEART_RATE}, {"resource": other}],
    }
    [outputs] = await processor.process([fhir(bundle)])
    assert sorted(o.key for o in outputs) == ["p1", "p2"]
    assert len({o.ce_id for o in outputs}) == 2


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_redis_down_stalls_the_batch(settings, manifest):
    down = redis.asyncio.Redis(
        host="127.0.0.1", port=closed_port(), retry=Retry(NoBackoff(), 0)
    )
    processor = await started(settings, manifest, down)
    with pytest.raises(Stalled) as stalled:
        await processor.process([fhir(HEART_RATE)])
    assert stalled.value.finished == []
    await down.aclose()


async def test_a_value_timed_in_the_future_is_refused_and_stores_nothing(processor):
    future = HEART_RATE | {"id": "hr-2099", "effectiveDateTime": "2099-01-01T00:00:00Z"}
    [refused, stored] = await processor.process([fhir(future), fhir(HEART_RATE)])
    assert isinstance(refused, InvalidInput)
    assert "future" in str(refused) and "2099-01-01" in str(refused)
    # The real value after it is still stored and announced.
    assert len(stored) == 1


async def test_a_time_the_stores_cannot_hold_is_bad_input_not_a_defect(
    processor, caplog
):
    distant = HEART_RATE | {"effectiveDateTime": "2999-01-01T00:00:00Z"}
    hl7 = ORU.replace(b"|||||F", b"|||||F|||29991204120000")
    with caplog.at_level(logging.ERROR, logger="cxrwatch.clinical.service"):
        refused = await processor.process([fhir(distant), record(hl7, HL7)])
    assert [type(outcome) for outcome in refused] == [InvalidInput, InvalidInput]
    assert all("outside the times cxrwatch stores" in str(r) for r in refused)
    assert caplog.records == []  # no "clinical reader failed"


async def test_declared_fhir_servers_come_from_a_comma_separated_variable(
    monkeypatch, redis_prefix, manifest, client
):
    bases = " https://ehr.example/fhir/ , http://old.example"
    monkeypatch.setenv("CXRWATCH_FHIR_SERVER_BASES", bases)
    settings = ClinicalSettings(redis_prefix=redis_prefix)
    assert settings.fhir_server_bases == (
        "https://ehr.example/fhir/",
        "http://old.example",
    )
    processor = await started(settings, manifest, client)
    ours = {"reference": "https://ehr.example/fhir/Patient/p9"}
    theirs = {"reference": "https://evil.example/fhir/Patient/p9"}
    stored, refused = await processor.process(
        [fhir(HEART_RATE | {"subject": ours}), fhir(HEART_RATE | {"subject": theirs})]
    )
    assert [output.key for output in stored] == ["p9"]
    assert type(refused) is MissingPatient
    assert "FHIR server at evil.example" in str(refused)
