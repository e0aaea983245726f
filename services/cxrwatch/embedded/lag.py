"""How far each consumer group is behind, read from the broker."""

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
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="cxrwatch-lag")
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, client_id="cxrwatch-lag")
    try:
        lag: dict[str, int] = {}
        for group in groups:
            partitions = [
                TopicPartition(topic, p)
                for topic in GROUP_TOPICS[group]
                for p in sorted(consumer.partitions_for_topic(topic) or ())
            ]
            ends = consumer.end_offsets(partitions)
            committed = admin.list_group_offsets(group).get(group, {})
            lag[group] = sum(
                end - (committed[tp].offset if tp in committed else 0)
                for tp, end in ends.items()
            )
        return lag
    finally:
        consumer.close()
        admin.close()


def wait_until_drained(
    bootstrap: str, timeout_s: float, settle_s: float = 3.0, poll_s: float = 1.0
) -> dict[str, int]:
    """Wait until every group has committed everything, steadily for ``settle_s``.

    Returns the last lag seen; a non-zero value means the timeout passed first.
    """
    deadline = time.monotonic() + timeout_s
    drained_since: float | None = None
    lag: dict[str, int] = {}
    while time.monotonic() < deadline:
        lag = group_lag(bootstrap)
        if any(lag.values()):
            drained_since = None
        elif drained_since is None:
            drained_since = time.monotonic()
        elif time.monotonic() - drained_since >= settle_s:
            return lag
        time.sleep(poll_s)
    logger.warning("pipeline not drained after %.0f s: lag %s", timeout_s, lag)
    return lag
