"""The ``cxrwatch`` command line against a real broker (Tansu).

Publishing: a file over the record limit and a file that does not parse are
each refused in one line while the files beside them are sent; what was sent
is read back from the broker. A replay stops at such a file, in one line.
"""

import json
import re
from pathlib import Path

import pytest
from cxrwatch.cli.main import app
from kafka import KafkaConsumer, TopicPartition
from typer.testing import CliRunner

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
