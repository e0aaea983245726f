"""A dead letter always fits its topic, however large the record it carries."""

import base64
import json
import logging

import pytest
from aiokafka.structs import ConsumerRecord
from cxrwatch.core.errors import InvalidInput
from cxrwatch.core.settings import ServiceSettings
from cxrwatch.core.stream import StreamService


class Nothing:
    name = "test"
    input_topics = ("in",)

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self) -> None:
        """Nothing to close."""

    async def process(self, records):  # type: ignore[no-untyped-def]
        return []


def record(value: bytes) -> ConsumerRecord:
    headers = [("ce_id", b"x")]
    return ConsumerRecord("in", 2, 41, 0, 0, b"k", value, None, 1, len(value), headers)


async def test_an_oversized_value_is_cut_to_fit_and_says_so() -> None:
    limit = 1_000_000
    service = StreamService(Nothing(), ServiceSettings(kafka_max_message_bytes=limit))
    value = bytes(range(256)) * 8000  # 2,048,000 bytes: twice the limit

    output = service._dead_letter(record(value), InvalidInput("too big"))

    letter = json.loads(output.value)
    assert len(output.value) <= limit
    assert letter["source_value_truncated"] is True
    assert letter["source_value_bytes"] == 2_048_000
    kept = base64.b64decode(letter["source_value"])
    # 3/4 of the limit less 64 KiB of room: 750,000 - 65,536 bytes.
    assert kept == value[: 750_000 - 65_536]
    assert (letter["source_partition"], letter["source_offset"]) == (2, 41)


async def test_a_small_value_is_kept_whole() -> None:
    service = StreamService(Nothing(), ServiceSettings())
    letter = json.loads(service._dead_letter(record(b"abc"), ValueError("x")).value)
    assert base64.b64decode(letter["source_value"]) == b"abc"
    assert letter["source_value_truncated"] is False
    assert letter["error_class"] == "ValueError"


async def test_the_reason_goes_on_the_letter_not_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = StreamService(Nothing(), ServiceSettings())
    reason = "subject 'Patient/MRN-0042' names no patient we know"

    with caplog.at_level(logging.WARNING, logger="cxrwatch.core.stream"):
        output = service._dead_letter(record(b"abc"), InvalidInput(reason))

    assert json.loads(output.value)["error_message"] == reason
    [logged] = [r.getMessage() for r in caplog.records]
    assert logged == "test dead-letters in[2]@41: InvalidInput"
    assert "MRN-0042" not in caplog.text
