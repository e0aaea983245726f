"""``make run``: the whole pipeline on the sample scenario, then the API stays up."""

import contextlib
import json
import logging
import os
import signal
import time
from operator import attrgetter
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from cxrwatch.cli.tables import console, print_alerts, print_dead_letters
from cxrwatch.core import topics
from cxrwatch.core.events import DeadLetter
from cxrwatch.core.kafka import blocking_client_options
from cxrwatch.core.settings import ServiceSettings
from cxrwatch.embedded.lag import wait_until_drained
from cxrwatch.embedded.stack import EmbeddedSettings, Stack, read_json

logger = logging.getLogger(__name__)


class _Stopped(BaseException):
    """SIGTERM or SIGHUP arrived: stop like Ctrl-C does."""


def _stop_on_signal(signum: int, frame: object) -> None:
    raise _Stopped(signal.Signals(signum).name)


def stop_unrecorded_children() -> None:
    """SIGTERM each process this one started and the stack did not record.

    A signal that arrives between a child's start and its entry in the
    stack's list leaves it unknown to :meth:`Stack.stop`, running on in a
    session of its own; in ``cxrwatch run`` every child is the stack's, so
    any still running is such a one. Each leads its own process group.
    """
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            logger.warning("stopping process %s, started as a signal came", entry.name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(int(entry.name), signal.SIGTERM)


def run_demo(*, once: bool) -> int:
    """Run the scenario; with ``once``, stop everything and return the exit code.

    Ctrl-C, SIGTERM and SIGHUP (a closed terminal) all stop every process the
    stack started: they run in sessions of their own, so nothing else would.
    """
    from cxrwatch.cli.main import replay_scenario
    from cxrwatch.scenario.plan import build

    settings = EmbeddedSettings()
    stack = Stack(settings)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    try:
        console.print("starting broker, Redis, Triton and the services…")
        stack.start()
        index = build(settings.run_dir / "scenario")
        client = ServiceSettings(kafka_bootstrap=stack.bootstrap)
        sent = replay_scenario(index, client)
        console.print(f"replayed {sent} messages; waiting for the pipeline to drain…")
        lag = wait_until_drained(stack.bootstrap, timeout_s=300)
        stack.check_alive()
        body = read_json(f"{stack.api_url}/alerts?limit=100", settings.api_key)
        print_alerts(body)
        print_dead_letters(read_dead_letters(client))
        if any(lag.values()):
            console.print(f"[red]pipeline did not drain: {lag}[/red]")
            return 1
        if once:
            return 0
        console.print(
            f"alert board on {stack.api_url}/board/ (key {settings.api_key}); "
            "Ctrl-C stops everything"
        )
        while True:
            stack.check_alive()
            time.sleep(1)
    except (KeyboardInterrupt, _Stopped):
        return 0
    finally:
        # A second signal must not cut the stop short and orphan the rest.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        console.print("stopping…")
        stack.stop()
        stop_unrecorded_children()


def read_dead_letters(settings: ServiceSettings) -> list[DeadLetter]:
    """Every letter on the dead-letter topic, oldest first across partitions.

    Raises
    ------
    pydantic.ValidationError
        If a record is not a dead letter.
    ValueError
        If a record is not JSON.
    """
    consumer = KafkaConsumer(
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=64 * 1024 * 1024,
        **blocking_client_options(settings),
    )
    try:
        partitions = consumer.partitions_for_topic(topics.DEADLETTER) or set()
        consumer.assign([TopicPartition(topics.DEADLETTER, p) for p in partitions])
        consumer.seek_to_beginning()
        letters = [
            DeadLetter.model_validate(json.loads(record.value)) for record in consumer
        ]
    finally:
        consumer.close()
    return sorted(letters, key=attrgetter("failed_at"))
