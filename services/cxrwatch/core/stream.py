"""The consume → process → produce → commit loop every stream service runs.

Life cycle of a poll:

* take up to ``batch_max_records`` records from the assigned partitions; with
  ``CXRWATCH_BATCH_WAIT_MS`` > 0, a poll that found fewer than the
  processor's preferred batch (``batch_size``, see :class:`Batching`) waits
  that long from its first record for the rest (see :func:`poll_batch`);
* hand them to the processor, which returns, per record, the outputs to
  produce or the error that stopped it;
  - :class:`DependencyUnavailable` (Redis, Triton down) stops the batch there:
    the partitions are rewound to the first unfinished record, readiness goes
    false, and the loop waits with capped exponential back-off;
  - any other error turns the record into a dead letter that names the error
    class, message, source topic, partition, offset and the original headers;
* produce every output and await each acknowledgement; an output the broker
  refuses (too large, say) dead-letters its input instead, and is counted;
* only then commit, per partition, the offset after the last finished record.

A crash anywhere before the commit redelivers the records; processors derive
output ids from their inputs, so a redelivery produces the same outputs again.
SIGTERM finishes the batch in hand (produce and commit) and leaves the group;
if it comes while the processor still waits at start, the wait ends there.
"""

import asyncio
import base64
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata

from cxrwatch.core import topics
from cxrwatch.core.errors import DependencyUnavailable, PublishFailed
from cxrwatch.core.events import DeadLetter
from cxrwatch.core.health import Health, serve_health
from cxrwatch.core.ids import deterministic_id
from cxrwatch.core.kafka import Output, client_options, headers_dict
from cxrwatch.core.metrics import (
    DEAD_LETTERS,
    PROCESSING_SECONDS,
    PUBLISH_FAILURES,
    RECORDS,
)
from cxrwatch.core.settings import ServiceSettings

logger = logging.getLogger(__name__)

Outcome = list[Output] | Exception


class Processor(Protocol):
    """What a service supplies: its name, its inputs and the work per record."""

    @property
    def name(self) -> str:
        """The service's name: its consumer group is ``cxrwatch-<name>``."""

    @property
    def input_topics(self) -> Sequence[str]:
        """Topics the service consumes."""

    async def start(self) -> None:
        """Connect to what the processor needs before the first poll."""

    async def stop(self) -> None:
        """Release connections."""

    async def process(self, records: Sequence[ConsumerRecord]) -> list[Outcome]:
        """Return one outcome per record, in order.

        Raise :class:`DependencyUnavailable` with ``.finished`` outcomes for the
        records completed before the dependency failed (see :class:`Stalled`).
        """


@runtime_checkable
class Batching(Protocol):
    """A processor that works best on batches of a given size (the scorer)."""

    @property
    def batch_size(self) -> int:
        """Records the processor would like in one call."""


Polled = dict[TopicPartition, list[ConsumerRecord]]


class Fetches(Protocol):
    """The part of AIOKafkaConsumer a poll uses."""

    async def getmany(
        self,
        *partitions: TopicPartition,
        timeout_ms: int = 0,
        max_records: int | None = None,
    ) -> Polled: ...


async def poll_batch(
    consumer: Fetches, *, timeout_ms: int, max_records: int, wanted: int, wait_s: float
) -> Polled:
    """One poll's records, topped up towards ``wanted`` for at most ``wait_s``.

    The first ``getmany`` waits, as usual, up to ``timeout_ms`` for anything
    at all. When fewer than ``wanted`` came, it asks again for the rest until
    ``wait_s`` after the first answer and merges what comes per partition, so
    each partition's records stay in offset order. Under light load the wait
    only adds latency (keep it 0 there); under heavy load it fills batches and
    saves model calls.
    """
    got = await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
    wanted = min(wanted, max_records)
    count = sum(len(records) for records in got.values())
    deadline = time.monotonic() + wait_s
    while 0 < count < wanted:
        left_ms = int((deadline - time.monotonic()) * 1000)
        if left_ms <= 0:
            break
        more = await consumer.getmany(timeout_ms=left_ms, max_records=wanted - count)
        for tp, records in more.items():
            got.setdefault(tp, []).extend(records)
            count += len(records)
    return got


class Stalled(DependencyUnavailable):
    """A dependency failed part-way through a batch."""

    def __init__(self, finished: list[Outcome], cause: DependencyUnavailable) -> None:
        super().__init__(str(cause))
        self.finished = finished
        self.cause = cause


async def process_each(
    records: Sequence[ConsumerRecord],
    handle: "RecordHandler",
) -> list[Outcome]:
    """Run ``handle`` per record, turning errors into outcomes.

    The default batch strategy: one bad record never affects its neighbours.
    """
    outcomes: list[Outcome] = []
    for record in records:
        try:
            outcomes.append(await handle(record))
        except DependencyUnavailable as exc:
            raise Stalled(outcomes, exc) from exc
        except Exception as exc:  # noqa: BLE001 - every failure is dead-lettered
            outcomes.append(exc)
    return outcomes


class RecordHandler(Protocol):
    async def __call__(self, record: ConsumerRecord) -> list[Output]: ...


@dataclass
class _Backoff:
    cap: float
    attempt: int = 0

    def next_delay(self) -> float:
        self.attempt += 1
        return float(min(self.cap, 0.5 * 2 ** (self.attempt - 1)))

    def reset(self) -> None:
        self.attempt = 0


class StreamService:
    """Runs one processor as a member of its consumer group."""

    def __init__(self, processor: Processor, settings: ServiceSettings) -> None:
        self.processor = processor
        self.settings = settings
        self.health = Health(processor.name)
        self._stopping = asyncio.Event()
        self._backoff = _Backoff(settings.retry_backoff_max_s)
        options = client_options(settings)
        self._consumer = AIOKafkaConsumer(
            *processor.input_topics,
            group_id=f"cxrwatch-{processor.name}",
            client_id=f"cxrwatch-{processor.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=settings.kafka_max_message_bytes,
            fetch_max_bytes=settings.kafka_max_message_bytes,
            rebalance_timeout_ms=6000,
            session_timeout_ms=10000,
            heartbeat_interval_ms=1000,
            fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
            **options,
        )
        self._producer = AIOKafkaProducer(
            client_id=f"cxrwatch-{processor.name}",
            acks="all",
            max_request_size=settings.kafka_max_message_bytes,
            linger_ms=2,
            **options,
        )

    def request_stop(self) -> None:
        """Finish the batch in hand, commit, and leave the group."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until asked to stop."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop)
        server = await serve_health(
            self.health, self.settings.health_port, self.settings.health_host
        )
        try:
            if await self._start_unless_stopped():
                while not self._stopping.is_set():
                    await self._poll_once()
        finally:
            await self._shutdown()
            if server is not None:
                server.close()

    async def _start_unless_stopped(self) -> bool:
        """Start, unless asked to stop first; True when started.

        A processor may wait at start for a dependency (the scorer for its
        model); SIGTERM then ends the wait instead of outliving the grace
        period.
        """
        starting = asyncio.ensure_future(self._start())
        stopping = asyncio.ensure_future(self._stopping.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            logger.info("%s stopped before it started", self.processor.name)
            return False
        starting.result()
        return True

    async def _start(self) -> None:
        await self.processor.start()
        await self._producer.start()
        await self._consumer.start()
        self.health.set_ready("broker")
        logger.info(
            "%s consuming %s",
            self.processor.name,
            ",".join(self.processor.input_topics),
        )

    async def _shutdown(self) -> None:
        logger.info("%s stopping", self.processor.name)
        await self._consumer.stop()
        await self._producer.stop()
        await self.processor.stop()

    async def _poll_once(self) -> None:
        batches = await poll_batch(
            self._consumer,
            timeout_ms=500,
            max_records=self.settings.batch_max_records,
            wanted=self._wanted(),
            wait_s=self.settings.batch_wait_ms / 1000,
        )
        records = [record for batch in batches.values() for record in batch]
        if not records:
            return
        started = time.perf_counter()
        try:
            outcomes = await self.processor.process(records)
            stalled: Stalled | None = None
        except Stalled as exc:
            outcomes, stalled = exc.finished, exc
        except DependencyUnavailable as exc:
            outcomes, stalled = [], Stalled([], exc)
        finished = records[: len(outcomes)]
        await self._publish(finished, outcomes)
        await self._commit(finished)
        PROCESSING_SECONDS.labels(self.processor.name).observe(
            time.perf_counter() - started
        )
        if stalled is None:
            if not self.health.ready:
                logger.info("%s dependencies are back", self.processor.name)
            self.health.set_ready("dependencies")
            self._backoff.reset()
            return
        self._rewind(records[len(outcomes) :])
        await self._wait_for_dependency(stalled.cause)

    def _wanted(self) -> int:
        if isinstance(self.processor, Batching):
            return self.processor.batch_size
        return self.settings.batch_max_records

    async def _wait_for_dependency(self, cause: DependencyUnavailable) -> None:
        delay = self._backoff.next_delay()
        self.health.set_not_ready("dependencies", str(cause))
        logger.warning(
            "%s paused: %s; retrying in %.1f s (cap CXRWATCH_RETRY_BACKOFF_MAX_S=%s)",
            self.processor.name,
            cause,
            delay,
            self.settings.retry_backoff_max_s,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    def _rewind(self, unfinished: Sequence[ConsumerRecord]) -> None:
        first: dict[TopicPartition, int] = {}
        for record in unfinished:
            tp = TopicPartition(record.topic, record.partition)
            first.setdefault(tp, record.offset)
        for tp, offset in first.items():
            self._consumer.seek(tp, offset)

    async def _publish(
        self, records: Sequence[ConsumerRecord], outcomes: Sequence[Outcome]
    ) -> None:
        pending = []
        for record, outcome in zip(records, outcomes, strict=True):
            if isinstance(outcome, Exception):
                outputs = [self._dead_letter(record, outcome)]
                RECORDS.labels(self.processor.name, record.topic, "dead-letter").inc()
            else:
                outputs = outcome
                RECORDS.labels(self.processor.name, record.topic, "ok").inc()
            pending.append((record, [await self._send(o) for o in outputs]))
        for record, futures in pending:
            try:
                await self._await_all(futures)
            except PublishFailed as exc:
                await self._await_all(
                    [await self._send(self._dead_letter(record, exc))]
                )

    async def _send(self, output: Output) -> "asyncio.Future[object]":
        try:
            sent: asyncio.Future[object] = await self._producer.send(
                output.topic,
                value=output.value,
                key=output.key.encode(),
                headers=output.headers(),
            )
            return sent
        except KafkaError as exc:
            PUBLISH_FAILURES.labels(self.processor.name, output.topic).inc()
            failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            failed.set_exception(
                PublishFailed(
                    f"{output.topic} refused a record of {len(output.value)} bytes: "
                    f"{exc!r}; the limit is CXRWATCH_KAFKA_MAX_MESSAGE_BYTES="
                    f"{self.settings.kafka_max_message_bytes}"
                )
            )
            return failed

    async def _await_all(self, futures: Sequence["asyncio.Future[object]"]) -> None:
        for future in futures:
            try:
                await future
            except PublishFailed:
                raise
            except KafkaError as exc:
                PUBLISH_FAILURES.labels(self.processor.name, "unknown").inc()
                raise PublishFailed(f"the broker did not acknowledge: {exc!r}") from exc

    def _dead_letter(self, record: ConsumerRecord, error: Exception) -> Output:
        DEAD_LETTERS.labels(self.processor.name, type(error).__name__).inc()
        # The reason can quote the input (a patient reference, a text value):
        # it goes on deadletter.v1 (`cxrwatch dead-letters`), not in the log.
        logger.warning(
            "%s dead-letters %s[%d]@%d: %s",
            self.processor.name,
            record.topic,
            record.partition,
            record.offset,
            type(error).__name__,
        )
        value = record.value or b""
        # base64 grows a value by 4/3: keep what fits the topic with room for
        # the rest of the letter, so an oversized input cannot block the stream.
        kept = min(len(value), self.settings.kafka_max_message_bytes * 3 // 4 - 65536)
        letter = DeadLetter(
            dead_letter_id=deterministic_id(
                "dead-letter",
                self.processor.name,
                record.topic,
                str(record.partition),
                str(record.offset),
            ),
            service=self.processor.name,
            error_class=type(error).__name__,
            error_message=str(error)[:2000],
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            source_key=base64.b64encode(record.key).decode() if record.key else None,
            source_headers=headers_dict(record.headers),
            source_value=base64.b64encode(value[:kept]).decode(),
            source_value_bytes=len(value),
            source_value_truncated=kept < len(value),
            failed_at=datetime.now(UTC),
        )
        return Output(
            topic=topics.DEADLETTER,
            key=record.key.decode("utf-8", "replace") if record.key else "",
            value=letter.model_dump_json().encode(),
            ce_type="org.cxrwatch.deadletter.v1",
            ce_id=letter.dead_letter_id,
            ce_source=f"cxrwatch/{self.processor.name}",
        )

    async def _commit(self, records: Sequence[ConsumerRecord]) -> None:
        offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        for record in records:
            tp = TopicPartition(record.topic, record.partition)
            offsets[tp] = OffsetAndMetadata(record.offset + 1, "")
        if offsets:
            await self._consumer.commit(offsets)
