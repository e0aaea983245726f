"""The whole pipeline on the sample scenario: real broker, Redis and Triton,
every service as its own process, exactly as ``make run`` starts them.
"""

import asyncio
import base64
import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer
from cxrwatch.cli.main import replay_scenario
from cxrwatch.core import topics
from cxrwatch.core.settings import ServiceSettings
from cxrwatch.embedded.lag import wait_until_drained
from cxrwatch.embedded.stack import SERVICES, EmbeddedSettings, Stack, read_json
from cxrwatch.scenario.plan import DETERIORATING, NOT_CHEST, STABLE, build

from tests.servers import REPO, free_port, free_run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    run_dir = REPO / "test-output" / f"e2e-{os.getpid()}"
    settings = EmbeddedSettings(
        run_dir=run_dir,
        redis_prefix=f"cxr-e2e-{uuid.uuid4().hex[:8]}",
        kafka_port=free_port(),
        redis_db=3,
        triton_http_port=free_port(),
        triton_grpc_port=free_port(),
        triton_metrics_port=free_port(),
        api_port=free_port(),
        health_base_port=free_run(len(SERVICES)),
        model_repository=REPO / "models",
        triton_venv=REPO / ".venv-triton",
    )
    stack = Stack(settings)
    try:
        stack.start()
        index = build(run_dir / "scenario")
        replay_scenario(index, ServiceSettings(kafka_bootstrap=stack.bootstrap))
        lag = wait_until_drained(stack.bootstrap, timeout_s=300)
        assert not any(lag.values()), f"pipeline did not drain: {lag}"
        yield stack
    finally:
        stack.stop()


def _alerts(stack: Stack, patient: str) -> list[dict]:
    body = read_json(
        f"{stack.api_url}/alerts?patient={patient}&limit=100",
        stack.settings.api_key,
    )
    assert isinstance(body, dict)
    return list(body["items"])


def _read_topic(bootstrap: str, topic: str) -> list[bytes]:
    async def read() -> list[bytes]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=64 * 1024 * 1024,
        )
        await consumer.start()
        values: list[bytes] = []
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=2000)
                if not batch:
                    return values
                values += [r.value for rs in batch.values() for r in rs]
        finally:
            await consumer.stop()

    return asyncio.run(read())


def test_the_deteriorating_patient_is_alerted_high_or_critical(pipeline: Stack) -> None:
    alerts = _alerts(pipeline, DETERIORATING)
    assert alerts, "the deteriorating patient raised no alert"
    assert {a["band"] for a in alerts} & {"high", "critical"}
    assert max(a["p_critical"] for a in alerts) >= 0.6
    # The inputs that moved are reported, and NEWS2 came along.
    first = alerts[-1]
    assert first["changes"]
    assert first["news2"]["score"] is not None


def test_the_stable_patient_and_the_non_chest_images_raise_nothing(
    pipeline: Stack,
) -> None:
    assert _alerts(pipeline, STABLE) == []
    assert _alerts(pipeline, NOT_CHEST) == []


def test_each_alert_id_is_stored_once(pipeline: Stack) -> None:
    body = read_json(f"{pipeline.api_url}/alerts?limit=100", pipeline.settings.api_key)
    ids = [a["alert_id"] for a in body["items"]]  # type: ignore[index]
    assert len(ids) == len(set(ids))


def test_risk_history_holds_the_stable_patients_scores(pipeline: Stack) -> None:
    body = read_json(
        f"{pipeline.api_url}/patients/{STABLE}/risk", pipeline.settings.api_key
    )
    assert isinstance(body, dict)
    scores = body["points"]
    assert len(scores) >= 3
    assert max(s["p_critical"] for s in scores) < 0.6


def test_monochrome1_chest_has_lungs_dark_and_spine_bright(pipeline: Stack) -> None:
    events = [
        json.loads(v)
        for v in _read_topic(pipeline.bootstrap, topics.IMAGING_RADIOGRAPHS)
    ]
    by_patient = {(e["patient_key"], e["photometric_interpretation"]) for e in events}
    assert (DETERIORATING, "MONOCHROME1") in by_patient
    # No tibia, hip or dog reached the joiner.
    assert all(e["patient_key"] != NOT_CHEST for e in events)
    chest = next(e for e in events if e["patient_key"] == DETERIORATING)
    image = np.frombuffer(base64.b64decode(chest["image"]["data"]), "<f4").reshape(
        chest["image"]["shape"]
    )[0]
    h, w = image.shape
    lungs = np.concatenate(
        [
            image[h // 3 : h // 2, w // 5 : w // 3].ravel(),
            image[h // 3 : h // 2, 2 * w // 3 : 4 * w // 5].ravel(),
        ]
    )
    spine = image[h // 3 : 2 * h // 3, 15 * w // 32 : 17 * w // 32]
    # Air in the lungs attenuates least: after inverting MONOCHROME1 it must
    # be darker than the mediastinum and spine.
    assert lungs.mean() + 0.1 < spine.mean()


def test_malformed_inputs_are_dead_lettered_and_the_rest_flowed(
    pipeline: Stack,
) -> None:
    letters = [
        json.loads(v) for v in _read_topic(pipeline.bootstrap, topics.DEADLETTER)
    ]
    by_source = {(letter["service"], letter["source_topic"]) for letter in letters}
    assert ("imaging", topics.DICOM_INSTANCES) in by_source
    assert ("clinical", topics.EHR_OBSERVATIONS) in by_source
    truncated = [
        letter
        for letter in letters
        if letter["service"] == "imaging"
        and "truncat" in letter["error_message"].lower()
    ]
    assert truncated, [letter["error_message"] for letter in letters]
    no_pid = [
        letter
        for letter in letters
        if letter["service"] == "clinical"
        and b"BAD0001" in base64.b64decode(letter["source_value"])
    ]
    assert len(no_pid) == 1
    for service in ("imaging", "clinical", "joiner", "scorer", "alerter"):
        with socket.create_connection(
            ("127.0.0.1", pipeline.health_port(service)), timeout=2
        ):
            pass
    pipeline.check_alive()


def _listening_addresses(port: int) -> set[str]:
    """IPv4 addresses something listens on at ``port``, from /proc/net/tcp."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        host, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
            addresses.add(socket.inet_ntoa(bytes.fromhex(host)[::-1]))
    return addresses


def test_the_local_stack_listens_on_loopback_only(pipeline: Stack) -> None:
    for service in SERVICES:
        assert _listening_addresses(pipeline.health_port(service)) == {"127.0.0.1"}
    assert _listening_addresses(pipeline.settings.api_port) == {"127.0.0.1"}
