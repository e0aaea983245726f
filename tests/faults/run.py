"""One fault case: start a private stack, replay the scenario wave by wave with a
fault struck at a seeded moment, then compare what the run left with the oracle.

The replay publishes a wave's records (and any poison messages due in it, at
seeded places), waits until every consumer group has committed the true end
of its topics, and only then publishes the next wave (see
:mod:`cxrwatch.scenario.load` for why). The fault strikes in a thread after a
seeded record of a seeded wave, plus a seeded delay of a fraction of a second,
so it lands while the services work on that wave; the replay goes on around
it, and the drain barrier waits for the pipeline to recover.

A case passes when:

* the set of ids on every output topic equals the oracle's (so every
  redelivered input produced the same ids, and nothing was lost);
* the API lists exactly the oracle's alerts, each once;
* every poison message is on the dead-letter topic exactly once, from the
  service and with the reason expected, its origin and headers intact, and
  there is no other dead letter;
* every child process runs and every service answers ready at the end, and
  each stream service then stops on SIGTERM with exit code 0.
"""

import logging
import random
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from cxrwatch.core import topics
from cxrwatch.core.kafka import Output, headers_dict
from cxrwatch.embedded.stack import SERVICES, EmbeddedSettings
from kafka import KafkaProducer

from tests.faults.drain import OffsetReader, wait_drained
from tests.faults.faults import GRACE_S, Fault, Timeline
from tests.faults.monitor import Monitor
from tests.faults.oracle import OUTPUT_TOPICS, Expected, input_output
from tests.faults.poison import Poison, poison_messages
from tests.faults.readback import api_alert_ids, dead_letters, events, topic_ids
from tests.faults.redis_server import PrivateRedis
from tests.faults.report import CaseResult
from tests.faults.stack import FaultStack
from tests.servers import REPO, free_port, free_run

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Case:
    """A named fault (or none), with or without the poison messages."""

    name: str
    fault: Fault | None = None
    poison: bool = False


@dataclass(frozen=True)
class Scenario:
    """The replayed scenario and what it must produce."""

    index: Path
    steps: list[dict[str, Any]]
    expected: Expected
    poison_keys: list[str]
    features: list[str]


@dataclass
class _Trigger:
    wave: int
    position: int
    delay_s: float


@dataclass
class _Replay:
    waves: dict[int, list[Output | Poison]] = field(default_factory=dict)
    trigger: _Trigger | None = None


def run_case(
    case: Case, scenario: Scenario, server: PrivateRedis, seed: int
) -> CaseResult:
    """Run ``case`` from a fresh broker and key prefix; see the module docstring."""
    started = time.monotonic()
    rng = random.Random(f"{seed}:{case.name}")
    poisons = (
        poison_messages(scenario.poison_keys, scenario.features, seed)
        if case.poison
        else []
    )
    replay = _plan(scenario, poisons, case.fault, rng)
    result = CaseResult(
        case.name,
        expected_alerts=len(scenario.expected.alerts),
        expected_dead_letters=len(poisons),
    )
    stack = FaultStack(_settings(case, server))
    timeline = Timeline()
    try:
        stack.start()
        monitor = Monitor(stack)
        monitor.start()
        try:
            deliveries = _replay(stack, server, replay, case.fault, timeline)
            if timeline.healed_at is not None:
                # The last wave can drain the moment the fault heals.
                monitor.wait_for_offsets_after(timeline.healed_at)
        finally:
            monitor.stop()
        _check_outputs(stack, scenario.expected, result)
        _check_dead_letters(stack, poisons, deliveries, result)
        _check_running(stack, result)
        _note_fault(case.fault, timeline, monitor, result)
        _check_graceful_stop(stack, result)
    except Exception as exc:
        logger.exception("case %s did not finish", case.name)
        result.problems.append(f"the case did not finish: {exc!r}")
    finally:
        stack.stop()
        _forget(server, stack.settings.redis_prefix)
        result.runtime_s = time.monotonic() - started
    return result


def _forget(server: PrivateRedis, prefix: str) -> None:
    """Delete the case's keys, so the private Redis stays small."""
    if not server.running:
        return
    client = redis.Redis.from_url(server.url)
    try:
        stale = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(stale), 500):
            client.delete(*stale[start : start + 500])
    finally:
        client.close()


def _settings(case: Case, server: PrivateRedis) -> EmbeddedSettings:
    slug = case.name.replace(" ", "-")
    return EmbeddedSettings(
        run_dir=REPO / "test-output" / "faults" / slug,
        redis_prefix=f"cxr-faults-{uuid.uuid4().hex[:8]}",
        kafka_port=free_port(),
        redis_port=server.port,
        redis_db=0,
        triton_http_port=free_port(),
        triton_grpc_port=free_port(),
        triton_metrics_port=free_port(),
        api_port=free_port(),
        health_base_port=free_run(len(SERVICES)),
        model_repository=REPO / "models",
        triton_venv=REPO / ".venv-triton",
    )


def _plan(
    scenario: Scenario,
    poisons: list[Poison],
    fault: Fault | None,
    rng: random.Random,
) -> _Replay:
    replay = _Replay()
    for n, step in enumerate(scenario.steps):
        output = input_output(scenario.index, step, f"load-{n}")
        replay.waves.setdefault(step["wave"], []).append(output)
    for poison in poisons:
        wave = replay.waves[poison.wave]
        wave.insert(rng.randrange(len(wave) + 1), poison)
    if fault is not None:
        wave_number = rng.choice(fault.waves)
        size = len(replay.waves[wave_number])
        replay.trigger = _Trigger(
            wave_number,
            rng.randrange(max(1, size * 4 // 5)),
            rng.uniform(0.2, 1.2),
        )
    return replay


def _replay(
    stack: FaultStack,
    server: PrivateRedis,
    replay: _Replay,
    fault: Fault | None,
    timeline: Timeline,
) -> dict[str, tuple[int, int]]:
    """Publish wave after wave; return where each poison message landed."""
    producer = KafkaProducer(
        bootstrap_servers=stack.bootstrap,
        acks="all",
        max_request_size=32 * 1024 * 1024,
        max_in_flight_requests_per_connection=1,
        linger_ms=5,
        client_id="cxrwatch-faults",
    )
    reader = OffsetReader(stack.bootstrap)
    striker: threading.Thread | None = None
    poisoned: dict[str, Any] = {}
    try:
        for wave in sorted(replay.waves):
            for position, item in enumerate(replay.waves[wave]):
                output = item.output() if isinstance(item, Poison) else item
                future = producer.send(
                    output.topic,
                    value=output.value,
                    key=output.key.encode(),
                    headers=output.headers(),
                )
                if isinstance(item, Poison):
                    poisoned[item.ce_id] = future
                trigger = replay.trigger
                if (
                    fault is not None
                    and trigger is not None
                    and (trigger.wave, trigger.position) == (wave, position)
                ):
                    producer.flush()
                    striker = _strike_later(fault, stack, server, timeline, trigger)
            producer.flush()
            wait_drained(reader, DRAIN_TIMEOUT_S)
            logger.info("wave %d drained", wave)
        if striker is not None:
            striker.join()
            wait_drained(reader, DRAIN_TIMEOUT_S)
    finally:
        producer.close()
        reader.close()
    landed = {}
    for ce_id, future in poisoned.items():
        metadata = future.get(timeout=30)
        landed[ce_id] = (metadata.partition, metadata.offset)
    return landed


def _strike_later(
    fault: Fault,
    stack: FaultStack,
    server: PrivateRedis,
    timeline: Timeline,
    trigger: _Trigger,
) -> threading.Thread:
    def strike() -> None:
        time.sleep(trigger.delay_s)
        logger.info("fault %s strikes in wave %d", fault.name, trigger.wave)
        try:
            fault.strike(stack, server, timeline)
        except Exception as exc:
            logger.exception("fault %s failed", fault.name)
            timeline.notes.append(f"PROBLEM: the fault itself failed: {exc!r}")

    thread = threading.Thread(target=strike, name="fault", daemon=True)
    thread.start()
    return thread


def _check_outputs(stack: FaultStack, expected: Expected, result: CaseResult) -> None:
    found = topic_ids(stack.bootstrap, OUTPUT_TOPICS)
    for topic in OUTPUT_TOPICS:
        ids = {i for i in found[topic].ids if not i.startswith("poison-")}
        missing = expected.ids[topic] - ids
        unexpected = ids - expected.ids[topic]
        if missing or unexpected:
            result.problems.append(
                f"{topic}: {len(missing)} ids missing, {len(unexpected)} unexpected"
            )
    scored = {
        score["score_id"]: score["p_critical"]
        for score in events(stack.bootstrap, topics.RISK_SCORES)
        if score.get("score_id") in expected.p_critical
    }
    if scored:
        widest = max(abs(p - expected.p_critical[i]) for i, p in scored.items())
        result.notes.append(
            f"largest p_critical difference from the oracle {widest:.1e}"
        )
    result.topic_duplicates = found[topics.ALERTS].duplicates
    result.redelivered = sum(found[t].duplicates for t in OUTPUT_TOPICS)
    listed = api_alert_ids(stack.api_url, stack.settings.api_key)
    result.found_alerts = len(set(listed))
    result.api_duplicates = len(listed) - len(set(listed))
    result.missing_alerts = len(expected.alert_ids - set(listed))
    result.unexpected_alerts = len(set(listed) - expected.alert_ids)
    if result.missing_alerts or result.unexpected_alerts:
        result.problems.append(
            f"API: {result.missing_alerts} alerts missing, "
            f"{result.unexpected_alerts} unexpected"
        )
    if result.api_duplicates:
        result.problems.append(f"API lists {result.api_duplicates} alerts twice")


def _check_dead_letters(
    stack: FaultStack,
    poisons: list[Poison],
    landed: dict[str, tuple[int, int]],
    result: CaseResult,
) -> None:
    letters = dead_letters(stack.bootstrap)
    result.dead_letters = len(letters)
    by_origin: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for letter in letters:
        by_origin[letter["source_headers"].get("ce_id", "?")].append(letter)
    for poison in poisons:
        found = by_origin.pop(poison.ce_id, [])
        if len(found) != 1:
            result.problems.append(f"{poison.ce_id}: {len(found)} dead letters")
            continue
        problem = _dead_letter_problem(poison, landed[poison.ce_id], found[0])
        if problem:
            result.problems.append(f"{poison.ce_id}: {problem}")
    for origin, stray in by_origin.items():
        first = stray[0]
        result.problems.append(
            f"{len(stray)} unexpected dead letter(s) of {origin} from "
            f"{first['service']}: {first['error_class']}: "
            f"{first['error_message'][:200]}"
        )


def _dead_letter_problem(
    poison: Poison, landed: tuple[int, int], letter: dict[str, Any]
) -> str | None:
    sent = headers_dict(poison.output().headers())
    sent.pop("ce_time")
    kept = {k: v for k, v in letter["source_headers"].items() if k != "ce_time"}
    checks = {
        "service": (letter["service"], poison.service),
        "source topic": (letter["source_topic"], poison.topic),
        "partition and offset": (
            (letter["source_partition"], letter["source_offset"]),
            landed,
        ),
        "headers": (kept, sent),
    }
    for what, (got, wanted) in checks.items():
        if got != wanted:
            return f"{what} is {got!r}, expected {wanted!r}"
    if letter["error_class"] not in poison.error_classes:
        return f"error class {letter['error_class']}, expected {poison.error_classes}"
    if poison.reason.lower() not in letter["error_message"].lower():
        return f"reason {letter['error_message'][:120]!r} lacks {poison.reason!r}"
    return None


def _check_running(stack: FaultStack, result: CaseResult) -> None:
    for child in stack.children:
        if not stack.alive(child.name):
            result.problems.append(f"{child.name} is not running")
    for name in (*SERVICES, "api"):
        try:
            stack.wait_ready(name, timeout_s=60)
        except (TimeoutError, RuntimeError) as exc:
            result.problems.append(f"{name} not ready at the end: {exc}")


def _note_fault(
    fault: Fault | None, timeline: Timeline, monitor: Monitor, result: CaseResult
) -> None:
    result.not_ready = sorted(monitor.not_ready())
    if fault is None:
        return
    result.lag_at_strike = timeline.lag_at_strike
    result.notes += timeline.notes
    result.problems += [n for n in timeline.notes if n.startswith("PROBLEM")]
    if timeline.healed_at is None:
        result.problems.append(f"the fault {fault.name} never healed")
        return
    recovered = monitor.recovered_at(timeline.healed_at, fault.groups)
    if recovered is None:
        result.problems.append("no recovery seen after the fault healed")
    else:
        result.recovery_s = recovered - timeline.healed_at


def _check_graceful_stop(stack: FaultStack, result: CaseResult) -> None:
    stopped = stack.terminate_all(SERVICES, timeout_s=GRACE_S)
    for service, (code, took) in stopped.items():
        if code != 0:
            result.problems.append(
                f"{service} exited {code} on SIGTERM after {took:.1f} s"
            )
