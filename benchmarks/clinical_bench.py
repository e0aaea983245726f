"""Throughput of the clinical step against the parsing libraries on the same messages.

For FHIR R4 (one vital-sign Observation per message, the shapes of the
specification's examples) and HL7 v2 (ORU^R01 with 10 OBX, every one mapped),
in the same run:

* library: ``fhir.resources`` validating each message (R4B Observation) or
  ``hl7.parse`` parsing it, and nothing else;
* read: the clinical readers (parse, map codes, convert units, check ranges);
* step: the whole processor (read, one pipelined Redis round trip per batch of
  64, ClinicalUpdate outputs), against the real Redis.

The three are timed in turn in each round, and the best round of each kept, so
that other work on the machine slows all three alike.

Each figure is observations per second, the best of ``--repeat`` runs; the
ratio step / library is the goal's measure (at least 0.8). Run it with::

    .venv/bin/python benchmarks/clinical_bench.py [--messages 2000] [--repeat 3]

Redis comes from ``CXRWATCH_TEST_REDIS_URL`` (default 127.0.0.1:6379/0); keys are
written under a prefix of their own and deleted at the end.
"""

import argparse
import asyncio
import dataclasses
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import hl7
import redis.asyncio
from aiokafka import ConsumerRecord
from cxrwatch.clinical.service import ClinicalProcessor, ClinicalSettings
from cxrwatch.core import topics
from cxrwatch.core.manifest import FeatureManifest, load_manifest
from fhir.resources.R4B import get_fhir_model_class

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "data" / "fhir_r4"
BATCH = 64
FHIR_HEADERS = [("content-type", b"application/fhir+json")]
HL7_HEADERS = [("content-type", b"x-application/hl7-v2+er7")]
START = datetime(2021, 3, 9, 8, 0, tzinfo=UTC)
HL7_RESULTS = [
    ("9279-1", "Resp rate", "22", "/min"),
    ("59408-5", "SpO2", "94", "%"),
    ("8480-6", "Systolic BP", "108", "mm[Hg]"),
    ("8867-4", "Heart rate", "104", "/min"),
    ("8310-5", "Temperature", "100.9", "[degF]"),
    ("3151-8", "O2 flow", "2", "L/min"),
    ("6690-2", "WBC", "11.2", "10*3/uL"),
    ("731-0", "Lymphocytes", "0.7", "10*3/uL"),
    ("1988-5", "CRP", "8.4", "mg/dL"),
    ("2532-0", "LDH", "412", "U/L"),
]


def fhir_messages(count: int) -> list[bytes]:
    """Vital-sign Observations shaped like the specification's examples."""
    templates = []
    for name in ("satO2", "heart-rate", "respiratory-rate", "body-temperature"):
        resource = json.loads((SAMPLES / f"Observation-{name}.json").read_bytes())
        resource.pop("text", None)
        templates.append(resource)
    messages = []
    for n in range(count):
        resource = dict(templates[n % len(templates)])
        resource["id"] = f"bench-{n}"
        resource["subject"] = {"reference": f"Patient/bench-{n % 500}"}
        moment = START + timedelta(minutes=n)
        resource["effectiveDateTime"] = moment.isoformat()
        messages.append(json.dumps(resource).encode())
    return messages


def hl7_messages(count: int) -> list[bytes]:
    """ORU^R01 messages of 10 OBX, each mapped to a feature."""
    messages = []
    for n in range(count):
        moment = (START + timedelta(minutes=n)).strftime("%Y%m%d%H%M%S")
        segments = [
            f"MSH|^~\\&|MONITOR|WARD7|CXRWATCH|HOSP|{moment}||ORU^R01|B{n}|P|2.5.1",
            f"PID|1||MRN{n % 500}^^^HOSP^MR||DOE^JANE||19500201|F",
            f"OBR|1|PL{n}|FI{n}|85353-1^Vitals^LN|||{moment}",
        ]
        for number, (code, name, value, unit) in enumerate(HL7_RESULTS, start=1):
            segments.append(
                f"OBX|{number}|NM|{code}^{name}^LN||{value}|{unit}|||||F|||{moment}"
            )
        messages.append("\r".join(segments).encode())
    return messages


def records(messages: Sequence[bytes], headers: list) -> list[ConsumerRecord]:
    return [
        ConsumerRecord(
            topic=topics.EHR_OBSERVATIONS,
            partition=0,
            offset=offset,
            timestamp=0,
            timestamp_type=0,
            key=None,
            value=value,
            checksum=None,
            serialized_key_size=0,
            serialized_value_size=len(value),
            headers=headers,
        )
        for offset, value in enumerate(messages)
    ]


def elapsed(run: Callable[[list[bytes]], object], messages: list[bytes]) -> float:
    started = time.perf_counter()
    run(messages)
    return time.perf_counter() - started


def _each(read: Callable[[bytes], object]) -> Callable[[list[bytes]], None]:
    """Read every message and keep none: a kept parse tree would slow the
    garbage collector for what follows."""

    def each(messages: list[bytes]) -> None:
        for message in messages:
            read(message)

    return each


async def step_seconds(
    processor: ClinicalProcessor, batch: list[ConsumerRecord]
) -> float:
    started = time.perf_counter()
    for offset in range(0, len(batch), BATCH):
        outcomes = await processor.process(batch[offset : offset + BATCH])
        failed = [o for o in outcomes if isinstance(o, Exception)]
        if failed:
            raise RuntimeError(f"the benchmark input was refused: {failed[0]}")
    return time.perf_counter() - started


def _renamed(record: ConsumerRecord, attempt: int) -> ConsumerRecord:
    """The same message about other observations: new ids, new order numbers."""
    value = record.value
    for old in (b"bench-", b"|FI", b"ORU^R01|B"):
        value = value.replace(old, old + b"%d-" % attempt)
    return dataclasses.replace(record, value=value)


async def measure(
    manifest: FeatureManifest, count: int, repeat: int
) -> dict[str, dict[str, float]]:
    """Best observations per second of library, read and step, per format.

    The three are timed in turn within each round, so that a machine busy with
    other work slows all three alike; the best round of each is kept.
    """
    url = os.environ.get("CXRWATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.asyncio.Redis.from_url(url)
    prefix = f"cxrbench-{uuid.uuid4().hex[:8]}"
    settings = ClinicalSettings(redis_prefix=prefix)
    processor = ClinicalProcessor(settings, manifest=manifest, redis_client=client)
    await processor.start()
    observation = get_fhir_model_class("Observation")
    readers = processor._readers  # the readers alone, without Redis
    formats = {
        "fhir": (fhir_messages(count), FHIR_HEADERS, 1),
        "hl7v2": (hl7_messages(count), HL7_HEADERS, len(HL7_RESULTS)),
    }
    library = {
        "fhir": _each(observation.model_validate_json),
        "hl7v2": _each(hl7.parse),
    }
    reader = {"fhir": readers["fhir-r4"], "hl7v2": readers["hl7v2"]}
    best: dict[str, dict[str, float]] = {
        name: {"library": math.inf, "read": math.inf, "step": math.inf}
        for name in formats
    }
    try:
        for name, (messages, _headers, _per) in formats.items():
            library[name](messages[:10])  # imports and caches before the clock
            _each(reader[name].read)(messages[:10])
        for attempt in range(repeat):
            for name, (messages, headers, _per) in formats.items():
                rates = best[name]
                batch = [_renamed(r, attempt) for r in records(messages, headers)]
                parse, read = library[name], reader[name].read
                rates["library"] = min(rates["library"], elapsed(parse, messages))
                rates["read"] = min(rates["read"], elapsed(_each(read), messages))
                rates["step"] = min(rates["step"], await step_seconds(processor, batch))
    finally:
        await processor.process([])  # releases the last receipts
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for offset in range(0, len(keys), 1000):
            await client.delete(*keys[offset : offset + 1000])
        await client.aclose()
    return {
        name: {kind: count * per / seconds for kind, seconds in best[name].items()}
        for name, (_messages, _headers, per) in formats.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--manifest",
        type=Path,
        default=REPO / "models" / "cxr_fusion" / "features.json",
    )
    options = parser.parse_args()
    manifest = load_manifest(options.manifest)
    results = asyncio.run(measure(manifest, options.messages, options.repeat))
    print(
        f"{'format':8} {'library':>10} {'read':>10} {'step':>10} {'step/library':>13}"
    )
    for name, rates in results.items():
        ratio = rates["step"] / rates["library"]
        print(
            f"{name:8} {rates['library']:10.0f} {rates['read']:10.0f} "
            f"{rates['step']:10.0f} {ratio:13.2f}"
        )
    print("observations per second; step = read + Redis (pipelined) + outputs")


if __name__ == "__main__":
    main()
