"""The imaging service as a process against a real Kafka-protocol broker (Tansu).

Seven objects go in: two chests to score (RG1 in JPEG 2000, fodicom's bare
MONOCHROME1 chest), a hip (skipped), a JPEG 2000 file cut 8 bytes short, random
bytes, the fodicom chest without Patient ID, and an RLE chest whose noise makes
its Rust codec panic. Two radiograph events and four dead letters must come
out, nothing for the hip, and the service must still run.
"""

import asyncio
import base64
import io
import json
import os
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cxrwatch.core import topics
from cxrwatch.core.events import DeadLetter, Radiograph
from cxrwatch.core.kafka import ensure_topics
from cxrwatch.core.settings import ServiceSettings
from pydicom import dcmread
from pydicom.data import get_testdata_file

from tests.servers import REPO, free_port, process, wait_port
from tests.unit.imaging.samples import rle_chest, with_noise

pytestmark = pytest.mark.integration

SHARED = REPO.parent / "shared" / "data" / "dicom"
LARGE = 32 * 1024 * 1024
MANIFEST = {
    "model": "cxr_fusion",
    "image": {"height": 224, "width": 224, "channels": 1},
    "features": [
        {
            "name": "spo2",
            "unit": "%",
            "loinc": ["59408-5"],
            "mean": 95.0,
            "std": 4.0,
            "lookback_hours": 24,
            "normal": 97.0,
            "valid_range": [50, 100],
        }
    ],
}


def _with_patient(raw: bytes, patient_id: str, *, as_file: bool) -> bytes:
    ds = dcmread(io.BytesIO(raw), force=True)
    ds.PatientID = patient_id
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=as_file)
    return buffer.getvalue()


def _model_repository(folder: Path) -> Path:
    manifest = folder / "models" / "cxr_fusion" / "features.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(MANIFEST))
    return folder / "models"


async def _produce(bootstrap: str, records: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=LARGE)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(
                topics.DICOM_INSTANCES, value, key=key.encode()
            )
    finally:
        await producer.stop()


async def _collect(
    bootstrap: str, keys: set[str], want_events: int, want_letters: int
) -> tuple[list[Radiograph], list[DeadLetter]]:
    consumer = AIOKafkaConsumer(
        topics.IMAGING_RADIOGRAPHS,
        topics.DEADLETTER,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        fetch_max_bytes=LARGE,
        max_partition_fetch_bytes=LARGE,
    )
    events: list[Radiograph] = []
    letters: list[DeadLetter] = []
    await consumer.start()
    try:
        async with asyncio.timeout(120):
            while len(events) < want_events or len(letters) < want_letters:
                batch = await consumer.getmany(timeout_ms=500)
                for record in (r for part in batch.values() for r in part):
                    key = record.key.decode() if record.key else ""
                    if key not in keys:
                        continue
                    if record.topic == topics.DEADLETTER:
                        letters.append(DeadLetter.model_validate_json(record.value))
                    else:
                        events.append(Radiograph.model_validate_json(record.value))
        await asyncio.sleep(3)  # anything extra would have arrived by now
        batch = await consumer.getmany(timeout_ms=1000)
        extra = [
            r
            for part in batch.values()
            for r in part
            if (r.key.decode() if r.key else "") in keys
        ]
        assert not extra, f"unexpected records: {[(r.topic, r.key) for r in extra]}"
    finally:
        await consumer.stop()
    return events, letters


def _metrics(port: int) -> str:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return str(answer.read().decode())


async def test_imaging_service_scores_chests_skips_hips_dead_letters_the_rest(
    kafka_bootstrap: str, output_dir: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    rg1_id, fodicom_id = f"rg1-{run}", f"fodicom-{run}"
    rg1 = Path(str(get_testdata_file("RG1_J2KR.dcm"))).read_bytes()
    fodicom = (SHARED / "fodicom__CR-MONO1-10-chest.dcm").read_bytes()
    hip = (SHARED / "dtf_WG04__RG2_JPLL.dcm").read_bytes()
    records = [
        (rg1_id, _with_patient(rg1, rg1_id, as_file=True)),
        (fodicom_id, _with_patient(fodicom, fodicom_id, as_file=False)),
        (f"hip-{run}", hip),
        (f"cut-{run}", rg1[:-8]),
        (f"noise-{run}", os.urandom(20_000)),
        (f"anonymous-{run}", fodicom),
        (f"panic-{run}", with_noise(rle_chest(), 200, -100)),
    ]
    ensure_topics(ServiceSettings(kafka_bootstrap=kafka_bootstrap))
    health = free_port()
    env = dict(os.environ)
    env |= {
        "CXRWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CXRWATCH_MODEL_REPOSITORY": str(_model_repository(output_dir)),
        "CXRWATCH_HEALTH_PORT": str(health),
        "CXRWATCH_DECODE_WORKERS": "1",
        "CXRWATCH_FACILITY_TIMEZONE": "Europe/Paris",
        "RUST_BACKTRACE": "1",  # as in the shell of the trial that found the panic
    }
    argv = [sys.executable, "-m", "cxrwatch.imaging"]

    log = output_dir / "imaging.log"
    logged_before = log.stat().st_size if log.exists() else 0
    with process(argv, log, env) as service:
        wait_port(health)
        await _produce(kafka_bootstrap, records)
        events, letters = await _collect(
            kafka_bootstrap, {key for key, _ in records}, 2, 4
        )
        time.sleep(0.5)
        metrics = _metrics(health)
        assert service.poll() is None, "the service stopped"

    by_patient = {event.patient_key: event for event in events}
    assert set(by_patient) == {rg1_id, fodicom_id}
    for event in events:
        image = event.image.to_array()
        assert image.shape == (1, 224, 224) and image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert event.photometric_interpretation == "MONOCHROME1"
    rg1_image = by_patient[rg1_id].image.to_array()[0]
    assert rg1_image[60:140, 40:80].mean() < rg1_image[60:140, 105:120].mean()
    fodicom_image = by_patient[fodicom_id].image.to_array()[0]
    assert fodicom_image[75:125, 45:75].mean() < fodicom_image[75:150, 102:117].mean()
    assert by_patient[fodicom_id].transfer_syntax_uid == "1.2.840.10008.1.2"

    by_key = {
        base64.b64decode(letter.source_key or "").decode(): letter for letter in letters
    }
    assert set(by_key) == {
        f"cut-{run}",
        f"noise-{run}",
        f"anonymous-{run}",
        f"panic-{run}",
    }
    assert "pixel data is truncated" in by_key[f"cut-{run}"].error_message
    assert "not a DICOM object" in by_key[f"noise-{run}"].error_message
    assert by_key[f"anonymous-{run}"].error_class == "MissingPatient"
    panic = by_key[f"panic-{run}"]
    assert panic.error_class == "InvalidInput"
    assert "RLE Lossless pixel data cannot be decoded: index out of" in (
        panic.error_message
    )
    this_run = log.read_bytes()[logged_before:].decode(errors="replace")
    assert "stack backtrace" not in this_run  # the codec's, 80 lines of it
    assert all(letter.service == "imaging" for letter in letters)
    assert 'cxrwatch_skipped_total{reason="not-chest",service="imaging"} 1.0' in metrics
