"""The imaging processor without a broker: outcomes per record, skips, crashes."""

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord
from cxrwatch.core import topics
from cxrwatch.core.errors import InvalidInput, MissingPatient
from cxrwatch.core.events import Radiograph
from cxrwatch.core.ids import deterministic_id
from cxrwatch.core.metrics import SKIPPED
from cxrwatch.core.settings import ServiceSettings
from cxrwatch.imaging.service import ImagingProcessor, ImagingSettings
from cxrwatch.scenario.dicom import reidentify
from pydicom.data import get_testdata_file

from tests.unit.imaging.samples import (
    FODICOM_CHEST,
    MODEL_SPEC,
    dataset,
    rle_chest,
    sample,
    to_bytes,
    with_noise,
)


def _record(offset: int, value: bytes | None) -> ConsumerRecord:
    size = len(value) if value else 0
    return ConsumerRecord(
        topics.DICOM_INSTANCES, 0, offset, 0, 0, b"k", value, None, 1, size, []
    )


@pytest.fixture
async def processor() -> AsyncIterator[ImagingProcessor]:
    settings = ImagingSettings(decode_workers=1, facility_timezone="Europe/Paris")
    running = ImagingProcessor(settings, image=MODEL_SPEC)
    await running.start()
    yield running
    await running.stop()


async def test_a_batch_gives_one_outcome_per_record_in_order(
    processor: ImagingProcessor,
) -> None:
    j2k = sample("RG1_J2KR.dcm")
    skipped_before = SKIPPED.labels("imaging", "not-chest")._value.get()
    records = [
        _record(0, j2k),
        _record(1, sample("dtf_WG04__RG2_JPLL.dcm")),
        _record(2, j2k[:-8]),
        _record(3, os.urandom(3000)),
        _record(4, sample(FODICOM_CHEST)),
        _record(5, None),
    ]

    outcomes = await processor.process(records)

    radiograph, hip, truncated, garbage, anonymous, empty = outcomes
    assert isinstance(radiograph, list) and len(radiograph) == 1
    output = radiograph[0]
    sop = str(dataset("RG1_J2KR.dcm").SOPInstanceUID)
    assert output.topic == topics.IMAGING_RADIOGRAPHS
    assert output.key == "9RG1"
    assert output.ce_type == "org.cxrwatch.radiograph.v1"
    assert output.ce_source == "cxrwatch/imaging"
    assert output.ce_id == deterministic_id("radiograph", sop)
    event = Radiograph.model_validate_json(output.value)
    assert event.radiograph_id == output.ce_id
    assert event.image.shape == [1, 224, 224]
    assert hip == []
    assert SKIPPED.labels("imaging", "not-chest")._value.get() == skipped_before + 1
    assert isinstance(truncated, InvalidInput)
    assert "pixel data is truncated" in str(truncated)
    assert isinstance(garbage, InvalidInput)
    assert isinstance(anonymous, MissingPatient)
    assert isinstance(empty, InvalidInput)


async def test_a_redelivery_gives_the_same_event(processor: ImagingProcessor) -> None:
    chest = sample("RG1_J2KI.dcm")

    first, second = await processor.process([_record(0, chest), _record(1, chest)])

    assert isinstance(first, list) and isinstance(second, list)
    assert first[0].ce_id == second[0].ce_id
    assert first[0].value == second[0].value


async def test_a_dead_worker_is_replaced_and_the_batch_goes_on(
    processor: ImagingProcessor,
) -> None:
    pool = processor._ensure_pool()
    killer = asyncio.get_running_loop().run_in_executor(pool, os._exit, 1)
    records = [_record(0, sample("RG1_J2KI.dcm"))]

    outcomes = await processor.process(records)

    with pytest.raises(Exception, match="terminated abruptly"):
        await killer
    assert isinstance(outcomes[0], list) and outcomes[0][0].key == "9RG1"
    assert processor._pool is not pool


async def test_a_codec_panic_is_dead_lettered_and_the_same_pool_decodes_on(
    processor: ImagingProcessor,
) -> None:
    # The panic came back as "PicklingError: Can't pickle <class
    # 'pyo3_runtime.PanicException'>" instead of a reason.
    pool = processor._pool
    chest = sample("RG1_J2KI.dcm")
    records = [_record(0, with_noise(rle_chest(), 200, -100)), _record(1, chest)]

    panicked, after = await processor.process(records)
    [rle] = await processor.process([_record(2, to_bytes(rle_chest()))])

    assert type(panicked) is InvalidInput
    assert "RLE Lossless pixel data cannot be decoded: index out of" in str(panicked)
    assert isinstance(after, list) and after[0].key == "9RG1"
    assert isinstance(rle, list) and rle[0].key == "11RG3"
    assert processor._pool is pool


async def test_settings_refuse_an_unknown_time_zone() -> None:
    with pytest.raises(ValueError, match="is not an IANA time zone"):
        ImagingSettings(facility_timezone="Mars/Olympus")


async def test_the_pool_is_replaced_after_its_share_and_nothing_queued_is_lost() -> (
    None
):
    # Python 3.11's max_tasks_per_child hung here: a batch straddling a
    # worker's retirement never finished.
    settings = ImagingSettings(decode_workers=1, decode_tasks_per_worker=3)
    running = ImagingProcessor(settings, image=MODEL_SPEC)
    await running.start()
    chest = sample("RG1_J2KI.dcm")
    pools = set()
    try:
        for first in range(0, 10, 5):
            batch = [_record(first + n, chest) for n in range(5)]
            outcomes = await asyncio.wait_for(running.process(batch), 120)
            assert [type(o) for o in outcomes] == [list] * 5
            pools.add(id(running._pool))
    finally:
        await running.stop()
    assert len(pools) == 2


async def test_the_next_pool_starts_before_the_last_is_retired() -> None:
    settings = ImagingSettings(decode_workers=1, decode_tasks_per_worker=10)
    running = ImagingProcessor(settings, image=MODEL_SPEC)
    try:
        first = running._ensure_pool()
        for _ in range(7):  # objects 2 to 8 of 10
            assert running._ensure_pool() is first
        assert running._successor is None
        assert running._ensure_pool() is first  # the share's last tenth
        successor = running._successor
        assert successor is not None
        assert running._ensure_pool() is first
        assert running._ensure_pool() is successor
        assert running._successor is None
    finally:
        await running.stop()


async def test_a_decode_past_its_time_is_dead_lettered_and_the_next_goes_on() -> None:
    settings = ImagingSettings(decode_workers=1, decode_timeout_s=0.001)
    running = ImagingProcessor(settings, image=MODEL_SPEC)
    await running.start()
    chest = sample("RG1_J2KI.dcm")
    try:
        [slow] = await running.process([_record(0, chest)])
        assert isinstance(slow, InvalidInput)
        assert "CXRWATCH_DECODE_TIMEOUT_S" in str(slow)
        running.settings.decode_timeout_s = 120
        [fine] = await running.process([_record(1, chest)])
    finally:
        await running.stop()
    assert isinstance(fine, list) and fine[0].key == "9RG1"


def test_a_poll_takes_few_objects_so_the_first_is_not_held_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A poll's events leave together once its last object is decoded.
    assert ImagingSettings().batch_max_records == 8
    assert ImagingSettings().batch_max_records < ServiceSettings().batch_max_records
    monkeypatch.setenv("CXRWATCH_BATCH_MAX_RECORDS", "2")
    assert ImagingSettings().batch_max_records == 2


def _chest_acquired(at: datetime) -> bytes:
    return reidentify(
        Path(str(get_testdata_file("RG1_J2KI.dcm"))),
        patient_id="FUT-1",
        patient_name="Future^Test",
        birth_date=date(1951, 3, 2),
        sex="F",
        acquired_at=at,
        seed=f"future-{at.isoformat()}",
    )


async def test_an_image_acquired_in_the_future_is_refused(
    processor: ImagingProcessor,
) -> None:
    # A modality clock in 2199 made the patient 247 years old and raised a
    # critical alert that stayed at the top of the list.
    now = datetime.now(UTC).replace(microsecond=0)
    records = [
        _record(0, _chest_acquired(now + timedelta(days=1))),
        _record(1, _chest_acquired(now + timedelta(minutes=30))),
        _record(2, _chest_acquired(datetime(2199, 1, 1, tzinfo=UTC))),
    ]

    tomorrow, skewed, far = await processor.process(records)

    assert isinstance(tomorrow, InvalidInput)
    assert "acquired in the future" in str(tomorrow)
    assert "CXRWATCH_IMAGING_MAX_FUTURE_MINUTES=60" in str(tomorrow)
    assert isinstance(skewed, list) and len(skewed) == 1  # within the tolerance
    assert isinstance(far, InvalidInput)
    assert "2199-01-01T00:00:00+00:00" in str(far)


async def test_an_image_acquired_before_the_stores_begin_is_refused(
    processor: ImagingProcessor,
) -> None:
    # An image of 1800-01-01 was scored, while the clinical service refuses
    # any time before 1970: the stores keep times as milliseconds since then.
    records = [
        _record(0, _chest_acquired(datetime(1800, 1, 1, tzinfo=UTC))),
        _record(1, _chest_acquired(datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC))),
        _record(2, _chest_acquired(datetime(1970, 1, 1, tzinfo=UTC))),
    ]

    old, eve, epoch = await processor.process(records)

    assert type(old) is InvalidInput
    assert "1800-01-01T00:00:00+00:00 is outside the times cxrwatch stores" in str(old)
    assert "FUT-1" not in str(old) and "Future" not in str(old)
    assert type(eve) is InvalidInput
    assert "1969-12-31T23:59:59+00:00 is outside" in str(eve)
    assert isinstance(epoch, list) and len(epoch) == 1
