"""The ``cxrwatch`` command line against a real broker (Tansu).

Publishing: a file over the record limit and a file that does not parse are
each refused in one line while the files beside them are sent; what was sent
is read back from the broker. A replay stops at such a file, in one line.
Dead letters: the command prints the letters on ``deadletter.v1`` oldest
first, filtered by time and count.
"""

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cxrwatch.cli.main import app
from cxrwatch.core import topics
from cxrwatch.core.events import DeadLetter
from cxrwatch.core.kafka import ensure_topics
from cxrwatch.core.settings import ServiceSettings
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from typer.testing import CliRunner

from tests.servers import free_port, tansu

pytestmark = pytest.mark.integration

ORU = (
    "MSH|^~\\&|LIS|H|CXRWATCH|H|20260101120000||ORU^R01^ORU_R01|7|P|2.5.1\r"
    "PID|1||CXR-77^^^GENHOSP^MR||Doe^Jo\r"
    "OBX|1|NM|8867-4^HR^LN||80|/min|||||F\r"
)
DELIVERY = re.compile(r"^(\S+) → ([\w.]+)\[(\d+)\]@(\d+)$")


def publish(kind: str, bootstrap: str, *files: Path, **env: str) -> tuple[int, list]:
    result = CliRunner().invoke(
        app, ["publish", kind, *map(str, files), "--bootstrap", bootstrap], env=env
    )
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output.splitlines()


def record_at(bootstrap: str, line: str) -> tuple[bytes, bytes]:
    """The key and value of the record a ``file → topic[p]@offset`` line names."""
    match = DELIVERY.fullmatch(line)
    assert match, line
    partition = TopicPartition(match[2], int(match[3]))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=5000)
    try:
        consumer.assign([partition])
        consumer.seek(partition, int(match[4]))
        record = next(iter(consumer))
    finally:
        consumer.close()
    return record.key, record.value


def test_a_file_over_the_limit_is_refused_in_one_line_and_the_rest_sent(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    huge = tmp_path / "huge.dcm"
    with huge.open("wb") as handle:
        handle.truncate(40 * 1024 * 1024)  # sparse: 40 MiB read, none written
    small = tmp_path / "small.dcm"
    small.write_bytes(b"\x00" * 200)

    code, lines = publish("dicom", kafka_bootstrap, huge, small)

    assert code == 1
    assert lines[0] == (
        "huge.dcm is 40.0 MiB (41943040 bytes), over the 32.0 MiB a record may "
        "hold; not sent (the limit is CXRWATCH_KAFKA_MAX_MESSAGE_BYTES=33554432: "
        "raise it for the CLI and the pipeline alike)"
    )
    assert len(lines) == 2
    assert record_at(kafka_bootstrap, lines[1]) == (b"unknown", b"\x00" * 200)


def test_a_file_that_fits_but_not_with_its_headers_is_refused_in_one_line(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # At exactly the limit the file passes the size check; the producer's own
    # check, which counts key and headers too, raised from send() unhandled.
    near = tmp_path / "near.dcm"
    near.write_bytes(b"\x00" * 65536)

    code, lines = publish(
        "dicom", kafka_bootstrap, near, CXRWATCH_KAFKA_MAX_MESSAGE_BYTES="65536"
    )

    assert code == 1
    assert len(lines) == 1
    assert lines[0].startswith(
        "near.dcm (65536 bytes) was not accepted by dicom.instances.v1: "
        "[Error 10] MessageSizeTooLargeError"
    )


def test_hl7_and_fhir_that_do_not_parse_are_refused_and_the_rest_sent(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    bad_hl7 = tmp_path / "bad.hl7"
    bad_hl7.write_text(ORU.replace("MSH|^~\\&|", "MSH|##|"))
    good_hl7 = tmp_path / "good.hl7"
    good_hl7.write_text(ORU)
    deep = tmp_path / "deep.json"
    deep.write_bytes(b"[" * 100_000 + b"]" * 100_000)

    hl7_code, hl7_lines = publish("hl7", kafka_bootstrap, bad_hl7, good_hl7)
    fhir_code, fhir_lines = publish("fhir", kafka_bootstrap, deep)

    assert (hl7_code, fhir_code) == (1, 1)
    assert hl7_lines[0] == (
        "bad.hl7 not sent: MSH-2 encoding characters '##' are not usable: "
        "2 characters, not 4 (or 5 with truncation); '#' repeated. MSH-2 holds "
        "the component, repetition, escape and subcomponent characters, all "
        "different, usually ^~\\&"
    )
    assert record_at(kafka_bootstrap, hl7_lines[1]) == (b"CXR-77", ORU.encode())
    assert len(hl7_lines) == 2
    assert fhir_lines == [
        "deep.json not sent: JSON nested deeper than 100 levels of arrays and "
        "objects; no FHIR resource needs that many"
    ]


def test_a_replay_stops_at_a_file_over_the_limit_in_one_line(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    with (tmp_path / "huge.dcm").open("wb") as handle:
        handle.truncate(40 * 1024 * 1024)
    steps = [{"kind": "dicom", "path": "huge.dcm", "key": "CXR-1"}]
    index = tmp_path / "scenario.json"
    index.write_text(json.dumps({"steps": steps}))

    result = CliRunner().invoke(
        app, ["replay", str(index), "--bootstrap", kafka_bootstrap]
    )

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.output.splitlines()[-1] == (
        "cxrwatch: replay stopped: huge.dcm is 40.0 MiB (41943040 bytes), over the "
        "32.0 MiB a record may hold; not sent (the limit is "
        "CXRWATCH_KAFKA_MAX_MESSAGE_BYTES=33554432: raise it for the CLI and the "
        "pipeline alike)"
    )


# Dead letters -------------------------------------------------------------------


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[str]:
    """A broker of this test's own, so that no other test's letters show."""
    with tansu(tmp_path) as bootstrap:
        yield bootstrap


def letter(reason: str, failed_at: datetime, offset: int) -> bytes:
    return (
        DeadLetter(
            dead_letter_id=f"dl-{offset}",
            service="clinical",
            error_class="InvalidInput",
            error_message=reason,
            source_topic=topics.EHR_OBSERVATIONS,
            source_partition=0,
            source_offset=offset,
            source_headers={},
            source_value="",
            failed_at=failed_at,
        )
        .model_dump_json()
        .encode()
    )


def send_letters(bootstrap: str, *values: bytes) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for number, value in enumerate(values):
            # Partitions out of time order: the command sorts across them.
            producer.send(topics.DEADLETTER, value, partition=2 - number % 3)
        producer.flush()
    finally:
        producer.close()


def dead_letters(bootstrap: str, *options: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["dead-letters", "--bootstrap", bootstrap, *options]
    )
    return result.exit_code, result.output


def test_dead_letters_oldest_first_since_and_limit(own_broker: str) -> None:
    now = datetime.now(UTC)
    ensure_topics(ServiceSettings(kafka_bootstrap=own_broker))
    send_letters(
        own_broker,
        letter("reason-c one minute ago", now - timedelta(minutes=1), 12),
        letter("reason-a two hours ago", now - timedelta(hours=2), 10),
        letter("reason-b half an hour ago", now - timedelta(minutes=30), 11),
    )

    code, everything = dead_letters(own_broker)
    since, recent = dead_letters(own_broker, "--since", "1h")
    limit, newest = dead_letters(own_broker, "--limit", "1")

    assert (code, since, limit) == (0, 0, 0)
    assert "3 dead letter(s)" in everything
    assert re.findall(r"reason-\w", everything) == ["reason-a", "reason-b", "reason-c"]
    assert re.findall(r"reason-\w", recent) == ["reason-b", "reason-c"]
    assert re.findall(r"reason-\w", newest) == ["reason-c"]
    assert "the newest 1 of 3; --limit shows more" in newest


def test_dead_letters_of_an_empty_broker(own_broker: str) -> None:
    code, output = dead_letters(own_broker)
    assert code == 0
    assert "0 dead letter(s)" in output


def test_a_time_that_is_not_one_is_a_usage_error(own_broker: str) -> None:
    code, output = dead_letters(own_broker, "--since", "yesterday")
    assert code == 2
    assert "'yesterday' is neither a time ago" in output


@pytest.mark.parametrize(
    ("value", "line"),
    [
        (
            json.dumps({"service": "clinical"}).encode(),
            "cxrwatch: deadletter.v1 holds a record that is not a dead letter: "
            "dead_letter_id: Field required",
        ),
        (
            b"not JSON",
            "cxrwatch: deadletter.v1 holds a record that is not JSON: "
            "Expecting value: line 1 column 1 (char 0)",
        ),
    ],
    ids=["not-a-letter", "not-json"],
)
def test_a_record_that_is_not_a_dead_letter_is_one_line(
    own_broker: str, value: bytes, line: str
) -> None:
    ensure_topics(ServiceSettings(kafka_bootstrap=own_broker))
    send_letters(own_broker, value)
    code, output = dead_letters(own_broker)
    assert code == 1
    assert output.splitlines() == [line]


@pytest.mark.parametrize(
    ("command", "line"),
    [
        (["dead-letters"], "cxrwatch: cannot read deadletter.v1 at {bootstrap}: "),
        (["publish", "hl7", "{file}"], "cxrwatch: cannot reach Kafka at {bootstrap}: "),
    ],
    ids=["dead-letters", "publish"],
)
def test_no_broker_is_one_line_after_the_bootstrap_wait(
    command: list[str], line: str, tmp_path: Path
) -> None:
    # Nothing listens on the port; kafka-python's own wait would be 30 s, so
    # the subprocess's 20 s limit fails the test if the setting is ignored.
    bootstrap = f"127.0.0.1:{free_port()}"
    message = tmp_path / "oru.hl7"
    message.write_text(ORU)
    argv = [part.format(file=message) for part in command]
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "cxrwatch"),
            *argv,
            "--bootstrap",
            bootstrap,
        ],
        env={**os.environ, "CXRWATCH_KAFKA_BOOTSTRAP_TIMEOUT_MS": "500"},
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines() + result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(line.format(bootstrap=bootstrap))
    assert "does not answer" in lines[0]
