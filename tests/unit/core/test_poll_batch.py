"""The runtime's poll: what it takes, and how long it waits to fill a batch."""

import asyncio

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from cxrwatch.core.stream import Batching, poll_batch

TP = TopicPartition("t", 0)


def made(first: int, n: int) -> list[ConsumerRecord]:
    return [
        ConsumerRecord("t", 0, first + i, 0, 0, b"k", b"v", None, 1, 1, ())
        for i in range(n)
    ]


class QueuedConsumer:
    """Hands out prepared polls one by one, like AIOKafkaConsumer.getmany."""

    def __init__(self, polls: list[tuple[float, int]]) -> None:
        self.polls = polls  # (delay, how many records)
        self.offset = 0
        self.asked: list[int] = []

    async def getmany(
        self, *tps: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[ConsumerRecord]]:
        assert max_records is not None
        self.asked.append(max_records)
        if not self.polls:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        delay, n = self.polls.pop(0)
        if delay * 1000 > timeout_ms:
            await asyncio.sleep(timeout_ms / 1000)
            self.polls.insert(0, (delay - timeout_ms / 1000, n))
            return {}
        await asyncio.sleep(delay)
        n = min(n, max_records)
        records = made(self.offset, n)
        self.offset += n
        return {TP: records}


def offsets(polled: dict[TopicPartition, list[ConsumerRecord]]) -> list[int]:
    return [record.offset for record in polled.get(TP, [])]


async def test_without_a_wait_a_poll_takes_what_is_there() -> None:
    consumer = QueuedConsumer([(0, 1), (0.01, 2)])

    got = await poll_batch(consumer, timeout_ms=500, max_records=64, wanted=4, wait_s=0)

    assert offsets(got) == [0]
    assert consumer.asked == [64]


async def test_a_poll_waits_to_fill_a_batch_and_keeps_offset_order() -> None:
    consumer = QueuedConsumer([(0, 1), (0.01, 2), (0.01, 5)])

    got = await poll_batch(
        consumer, timeout_ms=500, max_records=64, wanted=4, wait_s=0.5
    )

    assert offsets(got) == [0, 1, 2, 3]
    assert consumer.asked == [64, 3, 1]


async def test_a_poll_gives_up_waiting_after_the_wait() -> None:
    consumer = QueuedConsumer([(0, 1), (5.0, 3)])
    loop = asyncio.get_running_loop()

    started = loop.time()
    got = await poll_batch(
        consumer, timeout_ms=500, max_records=64, wanted=4, wait_s=0.05
    )

    assert offsets(got) == [0]
    assert loop.time() - started < 0.5


async def test_a_batch_never_exceeds_the_poll_limit() -> None:
    consumer = QueuedConsumer([(0, 2), (0, 2), (0, 2)])

    got = await poll_batch(
        consumer, timeout_ms=500, max_records=3, wanted=32, wait_s=0.5
    )

    assert offsets(got) == [0, 1, 2]
    assert consumer.asked == [3, 1]


async def test_an_empty_poll_does_not_wait_for_a_batch() -> None:
    consumer = QueuedConsumer([])

    got = await poll_batch(consumer, timeout_ms=20, max_records=64, wanted=4, wait_s=5)

    assert got == {}
    assert consumer.asked == [64]


def test_only_processors_with_a_batch_size_ask_for_one() -> None:
    class Plain:
        name = "plain"

    class Sized:
        batch_size = 8

    assert not isinstance(Plain(), Batching)
    assert isinstance(Sized(), Batching)
