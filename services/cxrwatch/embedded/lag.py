"""How far each consumer group is behind, read from the broker.

Tansu (the embedded broker) under-reports a partition's end offset after a
batch of several records: it answers the batch's base offset plus one, while
the records past it are still served to consumers. So a committed offset can
be ahead of the reported end; lag is counted as zero there, and "drained"
also requires that no group's committed offsets moved for a settling period,
which a consumer with records left to read would not allow.
"""

import logging
import time
from collections.abc import Iterable

from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient

logger = logging.getLogger(__name__)

# Which topics each service's group consumes.
GROUP_TOPICS = {
    "cxrwatch-imaging": ("dicom.instances.v1",),
    "cxrwatch-clinical": ("ehr.observations.v1",),
    "cxrwatch-joiner": ("imaging.radiographs.v1", "clinical.updates.v1"),
    "cxrwatch-scorer": ("inference.requests.v1",),
    "cxrwatch-alerter": ("risk.scores.v1",),
}


def group_lag(bootstrap: str, groups: Iterable[str] = GROUP_TOPICS) -> dict[str, int]:
    """Records not yet committed, per consumer group."""
    return {
        group: sum(behind for behind, _ in lags.values())
        for group, lags in _partition_lag(bootstrap, groups).items()
    }


def _partition_lag(
    bootstrap: str, groups: Iterable[str]
) -> dict[str, dict[TopicPartition, tuple[int, int]]]:
    """Per group and partition: (records behind, committed offset)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="cxrwatch-lag")
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, client_id="cxrwatch-lag", enable_auto_commit=False
    )
    try:
        lag: dict[str, dict[TopicPartition, tuple[int, int]]] = {}
        for group in groups:
            partitions = [
                TopicPartition(topic, p)
                for topic in GROUP_TOPICS[group]
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            ends = consumer.end_offsets(partitions)
            committed = admin.list_group_offsets(group).get(group, {})
            lag[group] = {}
            for tp, end in ends.items():
                done = committed[tp].offset if tp in committed else 0
                lag[group][tp] = (max(0, end - done), done)
        return lag
    finally:
        consumer.close()
        admin.close()


def wait_until_drained(
    bootstrap: str, timeout_s: float, settle_s: float = 4.0, poll_s: float = 1.0
) -> dict[str, int]:
    """Wait until no group lags and no committed offset moved for ``settle_s``.

    Returns the last lag seen; a non-zero value means the timeout passed first.
    """
    deadline = time.monotonic() + timeout_s
    steady_since: float | None = None
    previous: dict[str, dict[TopicPartition, tuple[int, int]]] | None = None
    lag: dict[str, int] = {}
    while time.monotonic() < deadline:
        current = _partition_lag(bootstrap, GROUP_TOPICS)
        lag = {
            group: sum(b for b, _ in parts.values()) for group, parts in current.items()
        }
        if any(lag.values()) or current != previous:
            steady_since = None
        elif steady_since is None:
            steady_since = time.monotonic()
        elif time.monotonic() - steady_since >= settle_s:
            return lag
        previous = current
        time.sleep(poll_s)
    logger.warning("pipeline not drained after %.0f s: lag %s", timeout_s, lag)
    return lag or {"unknown": 1}
