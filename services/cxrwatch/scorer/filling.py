"""Let a poll wait a little for a full micro-batch (``CXRWATCH_MICRO_BATCH_WAIT_MS``).

The stream runtime's poll returns as soon as any record is there: under light
load the scorer sends batches of one, which is the lowest latency. Under heavy
load a short wait fills a micro-batch and saves model calls. This wrapper
around the runtime's consumer does that wait:

* ``getmany`` first waits, as usual, for anything at all;
* when fewer records than the micro-batch size came, it asks again for the
  rest, for at most the wait from the first record, and merges what comes per
  partition (each partition's records stay in offset order);
* everything else (seek, commit, assignment) goes to the wrapped consumer, so
  commits and rewinds behave exactly as without it.

With a wait of 0 the wrapper is not installed at all.
"""

import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from cxrwatch.core.settings import ServiceSettings
from cxrwatch.core.stream import Processor, StreamService

Records = dict[TopicPartition, list[ConsumerRecord]]


class FillingConsumer:
    """An aiokafka consumer whose ``getmany`` waits for a micro-batch."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        target: Callable[[], int],
        wait_s: float,
    ) -> None:
        self._consumer = consumer
        self._target = target
        self._wait_s = wait_s

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)

    async def getmany(self, *partitions: TopicPartition, **options: Any) -> Records:
        """Records of one poll, topped up towards the micro-batch size."""
        got: Records = await self._consumer.getmany(*partitions, **options)
        limit = options.get("max_records") or 1 << 30
        wanted = min(self._target(), limit)
        deadline = time.monotonic() + self._wait_s
        count = sum(len(records) for records in got.values())
        while 0 < count < wanted:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            more = await self._consumer.getmany(
                *partitions, timeout_ms=left_ms, max_records=wanted - count
            )
            for tp, records in more.items():
                got.setdefault(tp, []).extend(records)
                count += len(records)
        return got


class FillingStreamService(StreamService):
    """The stream runtime, with a poll that waits for a micro-batch."""

    def __init__(
        self,
        processor: Processor,
        settings: ServiceSettings,
        target: Callable[[], int],
        wait_s: float,
    ) -> None:
        super().__init__(processor, settings)
        # The runtime has no hook for this; its consumer is wrapped, not
        # replaced, so its commit and rewind logic runs unchanged.
        self._consumer = FillingConsumer(self._consumer, target, wait_s)
