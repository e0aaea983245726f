"""Exact consumer lag, and waiting until the pipeline has nothing left to do.

Tansu answers ListOffsets with the base offset of a partition's last batch
plus one, short of the true end after a multi-record batch (see
:mod:`cxrwatch.embedded.lag`). A fetch response's high watermark is right,
though, so the true end of each partition is read by seeking a consumer to
the reported end and fetching: whatever records come back, the response
carries the high watermark.

The pipeline is drained when, in two readings a moment apart, every consumer
group has committed every partition it reads up to its true end and nothing
moved in between. A service commits only after its outputs are acknowledged,
so an upstream group at its end means its outputs already sit in the next
topic, where the next group's lag shows them.
"""

import asyncio
import logging
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from cxrwatch.embedded.lag import GROUP_TOPICS
from kafka.admin import KafkaAdminClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Offsets:
    """True end offsets per partition and committed offsets per group."""

    ends: dict[TopicPartition, int]
    committed: dict[str, dict[TopicPartition, int]]

    def lag(self, group: str) -> int:
        """Records the group has not committed yet."""
        done = self.committed.get(group, {})
        return sum(
            max(0, self.ends[tp] - done.get(tp, 0))
            for tp in self.ends
            if tp.topic in GROUP_TOPICS[group]
        )

    def lags(self) -> dict[str, int]:
        """Lag of every group."""
        return {group: self.lag(group) for group in GROUP_TOPICS}

    def progress(self, group: str) -> int:
        """Sum of the group's committed offsets: it grows as the group works."""
        return sum(self.committed.get(group, {}).values())


class OffsetReader:
    """Reads offsets from the broker; use one reader per thread."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._admin = KafkaAdminClient(
            bootstrap_servers=bootstrap, client_id="cxrwatch-faults-offsets"
        )
        self._topics = sorted({t for ts in GROUP_TOPICS.values() for t in ts})

    def close(self) -> None:
        """Close the admin connection."""
        self._admin.close()

    def read(self) -> Offsets:
        """The offsets as they stand now."""
        committed: dict[str, dict[TopicPartition, int]] = {}
        for group in GROUP_TOPICS:
            answer = self._admin.list_group_offsets(group).get(group, {})
            committed[group] = {
                TopicPartition(tp.topic, tp.partition): meta.offset
                for tp, meta in answer.items()
                if meta.offset >= 0
            }
        ends = asyncio.run(_true_ends(self.bootstrap, self._topics))
        return Offsets(ends, committed)


async def _true_ends(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        fetch_max_wait_ms=50,
        max_partition_fetch_bytes=64 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        await consumer.topics()  # metadata of every topic, not only assigned ones
        partitions = [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        reported = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        for tp, end in reported.items():
            consumer.seek(tp, end)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            await consumer.getmany(timeout_ms=100)
            if all(consumer.highwater(tp) is not None for tp in partitions):
                break
        return {tp: max(reported[tp], consumer.highwater(tp) or 0) for tp in partitions}
    finally:
        await consumer.stop()


def wait_drained(reader: OffsetReader, timeout_s: float) -> Offsets:
    """Wait until every group is at the true end of its topics; see the module.

    Raises
    ------
    TimeoutError
        Naming each group's lag, when ``timeout_s`` passes first.
    """
    deadline = time.monotonic() + timeout_s
    previous: Offsets | None = None
    while True:
        current = reader.read()
        if not any(current.lags().values()) and current == previous:
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the pipeline did not drain in {timeout_s:.0f} s: lag {current.lags()}"
            )
        previous = current
        time.sleep(0.3)
