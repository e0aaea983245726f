"""The clinical service as a process against a real broker (Tansu) and a real Redis.

In go FHIR R4 and HL7 v2 records for four patients (one FHIR record twice),
a valid message with nothing usable, and nine malformed ones. Out must come
five clinical updates (none for the duplicate), nine dead letters with their
reasons, the values in Redis where the joiner will read them, and the service
still running.
"""

import asyncio
import base64
import json
import os
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cxrwatch.core import topics
from cxrwatch.core.events import ClinicalUpdate, DeadLetter
from cxrwatch.core.kafka import ensure_topics
from cxrwatch.core.observations import ObservationStore
from cxrwatch.core.settings import ServiceSettings

from tests.servers import REPO, free_port, process, wait_port
from tests.unit.clinical.contract import build_manifest

pytestmark = pytest.mark.integration

SHARED = REPO.parent / "shared" / "data"
FHIR = [("content-type", b"application/fhir+json")]
HL7 = [("content-type", b"x-application/hl7-v2+er7")]
NO_HEADER: list[tuple[str, bytes]] = []


def _fhir_sample(name: str, patient: str) -> bytes:
    resource = json.loads((SHARED / "fhir_r4" / name).read_bytes())
    resource["subject"] = {"reference": f"Patient/{patient}"}
    return json.dumps(resource).encode()


def _observation(code: str, value: float, unit: str, patient: str, **extra) -> bytes:
    resource = {
        "resourceType": "Observation",
        "id": f"{patient}-{code}",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2021-03-09T14:30:00",
        "valueQuantity": {
            "value": value,
            "system": "http://unitsofmeasure.org",
            "code": unit,
        },
    }
    return json.dumps(resource | extra).encode()


def _oru(patient: str, *observations: str) -> bytes:
    segments = [
        "MSH|^~\\&|MONITOR|WARD7|CXRWATCH|HOSP|20210309143500||ORU^R01|"
        f"{patient}|P|2.5.1",
        f"PID|1||{patient}^^^HOSP^MR||DOE^JOHN||19500201|M",
        "OBR|1|PL1|FI1|85353-1^Vitals^LN|||20210309143000",
        *observations,
    ]
    return "\n".join(segments).encode()


def _records(run: str) -> tuple[list[tuple[str, bytes, list]], dict[str, str]]:
    a, b, c, d = f"{run}-a", f"{run}-b", f"{run}-c", f"{run}-d"
    lri = (SHARED / "hl7v2" / "LRI_2.0-NG_CBC_Typ_Message.hl7").read_bytes()
    lri = lri.replace(b"PATID1234^^^NIST MPI", f"{b}^^^NIST MPI".encode())
    sat_o2 = _fhir_sample("Observation-satO2.json", d)  # 2014: a patient of its own
    vitals = [
        "OBX|1|NM|9279-1^Resp rate^LN||24|/min|||||F",
        "OBX|2|NM|1988-5^CRP^LN||2.4|mg/dL|||||F",
    ]
    records = [
        (f"{d}-sat", sat_o2, FHIR),
        (f"{d}-sat-again", sat_o2, FHIR),
        (f"{a}-hr", _observation("8867-4", 112, "/min", a), FHIR),
        (f"{a}-temp", _observation("8310-5", 101.3, "[degF]", a), NO_HEADER),
        (f"{b}-cbc", lri, HL7),
        (f"{c}-vitals", _oru(c, *vitals), NO_HEADER),
        (f"{run}-panel", _fhir_sample("Observation-vitals-panel.json", a), FHIR),
        (f"{run}-bad-truncated", _observation("8867-4", 80, "/min", a)[:-30], FHIR),
        (f"{run}-bad-encounter", b'{"resourceType": "Encounter"}', FHIR),
        (f"{run}-bad-no-msh", _oru(c, vitals[0]).split(b"\n", 1)[1], HL7),
        (
            f"{run}-bad-no-pid",
            _oru(c, vitals[0]).replace(f"PID|1||{c}".encode(), b"NTE|1||x"),
            HL7,
        ),
        (f"{run}-bad-nm", _oru(c, vitals[0].replace("|24|", "|fast|")), HL7),
        (f"{run}-bad-unit", _observation("1988-5", 5, "furlongs", a), FHIR),
        (f"{run}-bad-spo2", _observation("59408-5", 0.91, "%", a), FHIR),
        (f"{run}-bad-msh-2", _oru(c, vitals[0]).replace(b"^~\\&", b"##"), HL7),
        (f"{run}-bad-deep", b"[" * 100_000 + b"]" * 100_000, FHIR),
    ]
    reasons = {
        f"{run}-bad-truncated": "not valid JSON",
        f"{run}-bad-encounter": "'Encounter' is not read here",
        f"{run}-bad-no-msh": "starts with MSH",
        f"{run}-bad-no-pid": "no PID",
        f"{run}-bad-nm": "NM value 'fast' is not a number",
        f"{run}-bad-unit": "'furlongs'",
        f"{run}-bad-spo2": "looks like a fraction",
        f"{run}-bad-msh-2": "MSH-2 encoding characters '##' are not usable",
        f"{run}-bad-deep": "JSON nested deeper than 100 levels",
    }
    return records, reasons


def _model_repository(folder: Path) -> Path:
    manifest = folder / "models" / "cxr_fusion" / "features.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(build_manifest().model_dump_json())
    return folder / "models"


async def _produce(bootstrap: str, records: list[tuple[str, bytes, list]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(
                topics.EHR_OBSERVATIONS, value, key=key.encode(), headers=headers
            )
    finally:
        await producer.stop()


async def _collect(
    bootstrap: str, run: str, want_updates: int, want_letters: int
) -> tuple[list[ClinicalUpdate], list[DeadLetter]]:
    consumer = AIOKafkaConsumer(
        topics.CLINICAL_UPDATES,
        topics.DEADLETTER,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    updates: list[ClinicalUpdate] = []
    letters: list[DeadLetter] = []

    def take(batch) -> None:
        for record in (r for part in batch.values() for r in part):
            if not (record.key or b"").decode().startswith(run):
                continue
            if record.topic == topics.DEADLETTER:
                letters.append(DeadLetter.model_validate_json(record.value))
            else:
                updates.append(ClinicalUpdate.model_validate_json(record.value))

    await consumer.start()
    try:
        async with asyncio.timeout(120):
            while len(updates) < want_updates or len(letters) < want_letters:
                take(await consumer.getmany(timeout_ms=500))
        await asyncio.sleep(3)  # a duplicate update would have arrived by now
        take(await consumer.getmany(timeout_ms=1000))
    finally:
        await consumer.stop()
    return updates, letters


def _metrics(port: int) -> str:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/metrics", timeout=5
    ) as answer:
        return str(answer.read().decode())


async def test_clinical_service_stores_announces_and_dead_letters(
    kafka_bootstrap: str, redis_url: str, redis_prefix: str, output_dir: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    records, reasons = _records(run)
    ensure_topics(ServiceSettings(kafka_bootstrap=kafka_bootstrap))
    health = free_port()
    env = dict(os.environ) | {
        "CXRWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CXRWATCH_REDIS_URL": redis_url,
        "CXRWATCH_REDIS_PREFIX": redis_prefix,
        "CXRWATCH_MODEL_REPOSITORY": str(_model_repository(output_dir)),
        "CXRWATCH_HEALTH_PORT": str(health),
        "CXRWATCH_FACILITY_TIMEZONE": "America/New_York",
    }
    argv = [sys.executable, "-m", "cxrwatch.clinical"]

    with process(argv, output_dir / "clinical.log", env) as service:
        wait_port(health)
        await _produce(kafka_bootstrap, records)
        updates, letters = await _collect(kafka_bootstrap, run, 5, len(reasons))
        time.sleep(0.5)
        metrics = _metrics(health)
        assert service.poll() is None, "the service stopped"

    values = {
        (u.patient_key, o.feature): o.value for u in updates for o in u.observations
    }
    assert len(updates) == 5, [u.observations for u in updates]
    assert values == {
        (f"{run}-d", "spo2"): 95.0,
        (f"{run}-a", "heart_rate"): 112.0,
        (f"{run}-a", "temperature"): pytest.approx(38.5, abs=0.05),
        (f"{run}-b", "wbc"): 105.6,
        (f"{run}-b", "lymphocytes"): 41.2,
        (f"{run}-c", "resp_rate"): 24.0,
        (f"{run}-c", "crp"): pytest.approx(24.0),
    }
    assert {u.source_format for u in updates if u.patient_key == f"{run}-b"} == {
        "hl7v2"
    }

    by_key = {letter.source_key: letter for letter in letters}
    assert len(letters) == len(reasons)
    for key, reason in reasons.items():
        letter = by_key[_b64(key)]
        assert reason in letter.error_message, (key, letter.error_message)
        assert letter.service == "clinical"
        assert letter.source_topic == topics.EHR_OBSERVATIONS
    assert by_key[_b64(f"{run}-bad-no-pid")].error_class == "MissingPatient"
    for malformed in ("bad-msh-2", "bad-deep"):
        assert by_key[_b64(f"{run}-{malformed}")].error_class == "InvalidInput"
    assert 'reason="nothing-usable",service="clinical"} 1.0' in metrics
    assert 'reason="unchanged",service="clinical"} 1.0' in metrics

    client = redis.asyncio.Redis.from_url(redis_url)
    try:
        store = ObservationStore(client, build_manifest(), prefix=redis_prefix)
        a = await store.snapshot(f"{run}-a", datetime(2021, 3, 9, 21, tzinfo=UTC))
        # 14:30 New York winter time without an offset is 19:30 UTC.
        assert a.observed_at["heart_rate"] == datetime(2021, 3, 9, 19, 30, tzinfo=UTC)
        assert a.values["temperature"] == pytest.approx(38.5, abs=0.05)
        d = await store.snapshot(f"{run}-d", datetime(2014, 12, 5, 9, tzinfo=UTC))
        assert d.values["spo2"] == 95.0
        later = await store.snapshot(f"{run}-d", datetime(2014, 12, 7, tzinfo=UTC))
        assert later.values["spo2"] is None  # beyond the 24 h look-back
        b = await store.snapshot(f"{run}-b", datetime(2011, 1, 4, tzinfo=UTC))
        assert (b.values["wbc"], b.values["lymphocytes"], b.values["sex"]) == (
            105.6,
            41.2,
            1.0,
        )
        assert b.values["age"] == pytest.approx(49.55, abs=0.01)
        sources = await client.hkeys(f"{redis_prefix}:obs:{{{run}-d}}:src")
        assert sorted(sources).count(b"fhir:Observation/satO2") == 1
    finally:
        await client.aclose()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
