"""The shared runtime against a real broker: dead letters, pauses, commits."""

import asyncio
import json
import uuid
from collections.abc import Sequence

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from cxrwatch.core import topics
from cxrwatch.core.errors import DependencyUnavailable
from cxrwatch.core.kafka import Output, ensure_topics
from cxrwatch.core.settings import ServiceSettings
from cxrwatch.core.stream import Outcome, StreamService, process_each

pytestmark = pytest.mark.integration


class Upper:
    """Upper-cases values; ``poison`` raises; ``wait`` needs a flaky dependency."""

    def __init__(self, source: str, sink: str, outages: int) -> None:
        self.name = f"upper-{source}"
        self.input_topics = (source,)
        self.sink = sink
        self.outages = outages
        self.seen: list[bytes] = []

    async def start(self) -> None:
        """Nothing to open."""

    async def stop(self) -> None:
        """Nothing to close."""

    async def process(self, records: Sequence[ConsumerRecord]) -> list[Outcome]:
        return await process_each(records, self._handle)

    async def _handle(self, record: ConsumerRecord) -> list[Output]:
        self.seen.append(record.value)
        if record.value == b"poison":
            raise ValueError("poison pill")
        if record.value == b"wait" and self.outages > 0:
            self.outages -= 1
            raise DependencyUnavailable("the dependency is down")
        return [
            Output(
                topic=self.sink,
                key=record.key.decode(),
                value=record.value.upper(),
                ce_type="test.upper",
                ce_id=f"{record.offset}",
                ce_source="test",
            )
        ]


async def read(bootstrap: str, topic: str, count: int, timeout: float = 30) -> list:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    found: list[ConsumerRecord] = []
    try:
        async with asyncio.timeout(timeout):
            while len(found) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    found.extend(records)
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return found


async def send(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value, key=b"patient-1")
    finally:
        await producer.stop()


async def run_until(service: StreamService, done: asyncio.Event) -> None:
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(done.wait(), timeout=60)
    service.request_stop()
    await asyncio.wait_for(task, timeout=30)


async def test_poison_is_dead_lettered_outage_paused_and_offsets_committed(
    kafka_bootstrap: str,
) -> None:
    source, sink = f"rt-in-{uuid.uuid4().hex[:6]}", f"rt-out-{uuid.uuid4().hex[:6]}"
    settings = ServiceSettings(kafka_bootstrap=kafka_bootstrap, retry_backoff_max_s=1)
    ensure_topics(settings, [source, sink, topics.DEADLETTER], partitions=1)
    await send(kafka_bootstrap, source, [b"a", b"poison", b"b", b"wait", b"c"])

    processor = Upper(source, sink, outages=2)
    service = StreamService(processor, settings)
    outputs: list = []

    async def collect() -> None:
        outputs.extend(await read(kafka_bootstrap, sink, 4))

    collector = asyncio.create_task(collect())
    done = asyncio.Event()
    collector.add_done_callback(lambda _: done.set())
    await run_until(service, done)

    assert [r.value for r in outputs] == [b"A", b"B", b"WAIT", b"C"]
    # "wait" was tried three times: two outages, then success; nothing after
    # it was processed while the dependency was down.
    assert processor.seen.count(b"wait") == 3
    assert processor.seen.index(b"c") > len(processor.seen) - 2

    letters = [
        json.loads(r.value)
        for r in await read(kafka_bootstrap, topics.DEADLETTER, 50, timeout=5)
        if json.loads(r.value)["source_topic"] == source
    ]
    assert len(letters) == 1
    assert letters[0]["error_class"] == "ValueError"
    assert letters[0]["source_offset"] == 1
    assert letters[0]["source_partition"] == 0
    assert "ce_id" not in letters[0]["source_headers"]

    # A new member of the group starts after the committed offsets: only the
    # new record is processed.
    await send(kafka_bootstrap, source, [b"d"])
    again = Upper(source, sink, outages=0)
    restarted = StreamService(again, settings)
    done = asyncio.Event()

    async def watch() -> None:
        while b"d" not in again.seen:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        done.set()

    watcher = asyncio.create_task(watch())
    await run_until(restarted, done)
    await watcher
    assert again.seen == [b"d"]
