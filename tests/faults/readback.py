"""What a run left behind: records on the topics, dead letters, the API's alerts."""

import asyncio
import base64
import json
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from cxrwatch.core import topics
from cxrwatch.embedded.stack import read_json


@dataclass
class TopicIds:
    """How often each ``ce_id`` appears on one topic."""

    counts: Counter[str] = field(default_factory=Counter)

    @property
    def ids(self) -> set[str]:
        """The distinct ids."""
        return set(self.counts)

    @property
    def duplicates(self) -> int:
        """Records beyond the first of each id."""
        return sum(self.counts.values()) - len(self.counts)


def topic_ids(bootstrap: str, names: tuple[str, ...]) -> dict[str, TopicIds]:
    """The ``ce_id`` of every record on each topic, read from the beginning."""
    records = asyncio.run(_read(bootstrap, names, values=False))
    found = {name: TopicIds() for name in names}
    for topic, headers, _ in records:
        found[topic].counts[headers.get("ce_id", "")] += 1
    return found


def dead_letters(bootstrap: str) -> list[dict[str, Any]]:
    """Every dead letter, decoded."""
    return events(bootstrap, topics.DEADLETTER)


def events(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every record of a JSON topic, decoded."""
    records = asyncio.run(_read(bootstrap, (topic,), values=True))
    return [json.loads(value) for _, _, value in records]


def source_value(letter: dict[str, Any]) -> bytes:
    """The original record value a dead letter carries."""
    return base64.b64decode(letter["source_value"])


def api_alert_ids(api_url: str, api_key: str) -> list[str]:
    """Every alert id the API lists, page by page, repeats included."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        query = {"limit": "200"} | ({"cursor": cursor} if cursor else {})
        url = f"{api_url}/alerts?{urllib.parse.urlencode(query)}"
        page = read_json(url, api_key)
        assert isinstance(page, dict)
        ids += [item["alert_id"] for item in page["items"]]
        cursor = page.get("next_cursor")
        if not cursor:
            return ids


async def _read(
    bootstrap: str, names: tuple[str, ...], *, values: bool
) -> list[tuple[str, dict[str, str], bytes]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [
            TopicPartition(name, p)
            for name in names
            for p in sorted(consumer.partitions_for_topic(name) or ())
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[tuple[str, dict[str, str], bytes]] = []
        while not await _at_end(consumer, partitions):
            batches = await consumer.getmany(timeout_ms=200)
            for batch in batches.values():
                for record in batch:
                    headers = {k: v.decode() for k, v in record.headers}
                    value = (record.value or b"") if values else b""
                    found.append((record.topic, headers, value))
        return found
    finally:
        await consumer.stop()


async def _at_end(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
    """True once every partition is read up to the high watermark a fetch gave."""
    for tp in partitions:
        end = consumer.highwater(tp)
        if end is None or await consumer.position(tp) < end:
            return False
    return True
