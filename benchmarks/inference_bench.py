"""How fast cxr_fusion scores: bare session, scorer path through Triton, pipeline.

All in one process, one run, on whatever machine runs it:

1. **raw**: an ONNX Runtime session on ``models/cxr_fusion/1/model.onnx`` with
   the threads the Triton config gives the model (``intra_op_threads``), at
   batch 1, 8 and 32: images/s. This is the floor the Triton path is held to.
2. **triton**: the scorer's own backend (:class:`TritonBackend`: gRPC client,
   binary tensors, the wheel's tritonserver with its Python backend and
   dynamic batcher) with two batches in flight, as the scorer sends them, the
   image on the wire and through system shared memory; the ratio to raw is
   taken per round (raw and Triton alternate, so a busy machine slows both
   alike) and the median reported. Then a steady offered load of single
   requests (half the raw batch-8 rate, open loop): p50 and p99 latency
   against the model's own compute at batch 1, and the mean batch Triton
   formed (from its metrics).
3. **end to end**: the embedded stack (broker, Redis, Triton, every service,
   API) on private ports and Redis prefix, fed for 60 s with 10 radiographs/s
   (RG1_J2KI chests re-identified as distinct patients) and 500 clinical
   observations/s (FHIR vital-sign Bundles and HL7 ORU^R01, built before the
   clock starts): p50/p99 from the radiograph event to its score on
   ``risk.scores.v1`` and from that score to the alert stored and published,
   all from the records' own timestamps.

Goals: Triton ≥ 0.9 of raw at batch 8 and 32; end-to-end p99 ≤ 3x the
model's own p99 compute. Run: ``.venv/bin/python -m benchmarks inference_bench``
or ``.venv/bin/python benchmarks/inference_bench.py [--skip-e2e] [--csv OUT]``.
"""

import argparse
import asyncio
import csv
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cxrwatch.core import topics
from cxrwatch.core.events import InferenceRequest, News2, Tensor
from cxrwatch.core.kafka import Output, new_event_id
from cxrwatch.core.manifest import load_manifest
from cxrwatch.embedded.lag import wait_until_drained
from cxrwatch.embedded.stack import EmbeddedSettings, Stack
from cxrwatch.scenario.dicom import reidentify
from cxrwatch.scenario.messages import (
    LabResult,
    Vital,
    blood_pressure,
    bundle,
    observation,
    oru_r01,
)
from cxrwatch.scorer.backends import Batch, TritonBackend
from cxrwatch.scorer.service import Scorer
from pydicom.data import get_testdata_file

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "cxr_fusion"
MANIFEST = load_manifest(MODEL / "features.json")
BATCHES = (1, 8, 32)


def _config_parameter(key: str) -> str:
    found = re.search(
        rf'"{key}".*?string_value: "(\w+)"',
        (MODEL / "config.pbtxt").read_text("utf-8"),
        re.S,
    )
    assert found is not None, f"config.pbtxt has no parameter {key}"
    return found.group(1)


# The same session options the CPU config gives the model inside Triton.
THREADS = int(_config_parameter("intra_op_threads"))
SPINNING = _config_parameter("allow_spinning")


def _batch(n: int, seed: int = 5) -> Batch:
    rng = np.random.default_rng(seed)
    return Batch(
        image=rng.random((n, 1, 224, 224), dtype=np.float32),
        clinical=rng.standard_normal((n, 12)).astype(np.float32),
        clinical_mask=np.ones((n, 12), dtype=np.float32),
    )


def _feeds(batch: Batch) -> dict[str, np.ndarray]:
    return {
        "image": batch.image,
        "clinical": batch.clinical,
        "clinical_mask": batch.clinical_mask,
    }


def _session() -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", SPINNING)
    return ort.InferenceSession(
        str(MODEL / "1" / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )


@dataclass(frozen=True)
class Run:
    """Images done, the wall-clock seconds and the CPU seconds they took."""

    images: int
    wall_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        """Images per wall-clock second."""
        return self.images / self.wall_s

    @property
    def per_cpu(self) -> float:
        """Images per CPU second: what the path costs, whatever else runs."""
        return self.images / max(self.cpu_s, 1e-9)


def session_cpu_s(session: int) -> float:
    """CPU seconds (user + system) of the live processes of a Unix session."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # After the command name: state ppid pgrp session ... utime stime.
        if int(fields[3]) == session:
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def raw_rate(session: ort.InferenceSession, batch: Batch, min_s: float) -> Run:
    """Back-to-back calls for at least ``min_s``; CPU of this process."""
    feeds, calls = _feeds(batch), 0
    started, cpu = time.perf_counter(), time.process_time()
    while calls < 2 or time.perf_counter() - started < min_s:
        session.run(None, feeds)
        calls += 1
    wall = time.perf_counter() - started
    return Run(calls * len(batch), wall, time.process_time() - cpu)


def raw_latencies_ms(session: ort.InferenceSession, calls: int) -> list[float]:
    """Milliseconds of single-image calls, one after another."""
    feeds, found = _feeds(_batch(1)), []
    for _ in range(calls):
        started = time.perf_counter()
        session.run(None, feeds)
        found.append((time.perf_counter() - started) * 1000)
    return found


async def triton_rate(
    backend: TritonBackend, batch: Batch, min_s: float, server: int, inflight: int = 2
) -> Run:
    """``inflight`` batches always on their way for ``min_s``.

    The CPU is this process's (the client) plus the server's session (the
    tritonserver and its Python-backend stub).
    """
    done = 0
    cpu = time.process_time() + session_cpu_s(server)
    started = time.perf_counter()

    async def sender() -> None:
        nonlocal done
        while time.perf_counter() - started < min_s or done < 2 * len(batch):
            await backend.infer(batch)
            done += len(batch)

    await asyncio.gather(*(sender() for _ in range(inflight)))
    wall = time.perf_counter() - started
    return Run(done, wall, time.process_time() + session_cpu_s(server) - cpu)


async def offered_load_ms(
    backend: TritonBackend, rate: float, seconds: float
) -> list[float]:
    """Latency of single requests arriving every 1/rate s, open loop."""
    one = _batch(1)
    latencies: list[float] = []
    start = time.perf_counter() + 0.1

    async def request(scheduled: float) -> None:
        await backend.infer(one)
        latencies.append((time.perf_counter() - scheduled) * 1000)

    tasks = []
    for k in range(int(rate * seconds)):
        scheduled = start + k / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        tasks.append(asyncio.create_task(request(scheduled)))
    await asyncio.gather(*tasks)
    return latencies


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
    return ordered[index]


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def triton_server(log: Path) -> Iterator[tuple[str, int, int]]:
    """The wheel's tritonserver serving models/.

    Yields its gRPC address, its metrics port and its Unix session id.
    """
    http, grpc, metrics = free_port(), free_port(), free_port()
    script = REPO / "scripts" / "triton" / "start_triton.sh"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = ["bash", str(script), str(REPO / "models")]
    argv += [str(port) for port in (http, grpc, metrics)]
    with log.open("ab") as handle:
        server = subprocess.Popen(
            argv,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while not _ready(f"http://127.0.0.1:{http}/v2/health/ready"):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"tritonserver did not start; see {log}")
            time.sleep(0.3)
        yield f"127.0.0.1:{grpc}", metrics, server.pid
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _metrics_text(port: int) -> str:
    """Triton's Prometheus metrics page."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def batching_counts(metrics_port: int, model: str = "cxr_fusion") -> tuple[int, int]:
    """Triton's (images inferred, model executions) of ``model`` so far."""
    text = _metrics_text(metrics_port)
    counts = []
    for name in ("nv_inference_count", "nv_inference_exec_count"):
        found = re.search(rf'^{name}{{model="{model}".*}} (\d+)', text, re.M)
        counts.append(int(found.group(1)) if found else 0)
    return counts[0], counts[1]


def latency_summaries(
    metrics_port: int, model: str = "cxr_fusion"
) -> dict[str, dict[float, float]]:
    """Triton's own latency quantiles of ``model`` in ms, by stage.

    Stages: ``request`` (server receipt to response), ``queue`` (in the
    dynamic batcher) and ``compute_infer`` (the model's execution, each
    request charged with the whole batch it ran in). Triton keeps these
    summaries over a sliding window of about the last minute
    (``--metrics-config=summary_latencies=true``, set by start_triton.sh).
    """
    text = _metrics_text(metrics_port)
    found: dict[str, dict[float, float]] = {}
    pattern = (
        rf'^nv_inference_(\w+)_summary_us{{model="{model}",version="[^"]*",'
        rf'quantile="([\d.]+)"}} ([\d.e+-]+)$'
    )
    for stage, quantile, value in re.findall(pattern, text, re.M):
        found.setdefault(stage, {})[float(quantile)] = float(value) / 1000
    return found


@dataclass
class Row:
    """One measured figure, for the table and the CSV."""

    part: str
    what: str
    batch: int | str
    value: float
    unit: str
    ratio: float | None = None
    note: str = ""


@dataclass
class Report:
    """Every row of the run."""

    rows: list[Row] = field(default_factory=list)

    def add(self, *args: Any, **kwargs: Any) -> None:
        """Add a row and print it at once (a long run shows progress)."""
        row = Row(*args, **kwargs)
        self.rows.append(row)
        ratio = f"{row.ratio:6.2f}" if row.ratio is not None else "     -"
        print(
            f"{row.part:<9} {row.what:<44} {row.batch!s:>5} "
            f"{row.value:10.1f} {row.unit:<9} {ratio}  {row.note}",
            flush=True,
        )


async def throughput(
    report: Report, url: str, server: int, rounds: int, min_s: float
) -> float:
    """Parts 1 and 2: raw against Triton, per round; returns raw batch-8 rate."""
    session = _session()
    wire = TritonBackend(url, "cxr_fusion", MANIFEST, 60, shared_memory="off")
    shm = TritonBackend(url, "cxr_fusion", MANIFEST, 60, shared_memory="system")
    await wire.start()
    await shm.start()
    raw8 = 0.0
    for size in BATCHES:
        batch = _batch(size)
        raw_rate(session, batch, 0.2)  # warm both paths
        await triton_rate(shm, batch, 0.2, server)
        runs: dict[str, list[Run]] = {"raw": [], "wire": [], "shm": []}
        for _ in range(rounds):
            runs["raw"].append(raw_rate(session, batch, min_s))
            runs["wire"].append(await triton_rate(wire, batch, min_s, server))
            runs["shm"].append(await triton_rate(shm, batch, min_s, server))
        raw8 = statistics.median(r.rate for r in runs["raw"]) if size == 8 else raw8
        _throughput_rows(report, size, runs)
    await _scorer_row(report, shm, session, min_s)
    await wire.close()
    await shm.close()
    return raw8


def _throughput_rows(report: Report, size: int, runs: dict[str, list[Run]]) -> None:
    """Wall-clock rates with per-round ratios, and images per CPU second."""
    raw = runs["raw"]
    report.add(
        "raw",
        "ONNX Runtime session",
        size,
        statistics.median(r.rate for r in raw),
        "images/s",
        None,
        f"{statistics.median(r.per_cpu for r in raw):.1f} images per CPU s",
    )
    for mode, label in (("wire", "on the wire"), ("shm", "shared memory")):
        ratios = [t.rate / r.rate for t, r in zip(runs[mode], raw, strict=True)]
        report.add(
            "triton",
            f"TritonBackend, 2 in flight, {label}",
            size,
            statistics.median(r.rate for r in runs[mode]),
            "images/s",
            statistics.median(ratios),
            f"ratio range {min(ratios):.2f}-{max(ratios):.2f}",
        )
        per_cpu = [t.per_cpu / r.per_cpu for t, r in zip(runs[mode], raw, strict=True)]
        report.add(
            "triton",
            f"  same, images per CPU second ({mode})",
            size,
            statistics.median(r.per_cpu for r in runs[mode]),
            "img/CPU-s",
            statistics.median(per_cpu),
            f"ratio range {min(per_cpu):.2f}-{max(per_cpu):.2f}",
        )


async def _scorer_row(
    report: Report, backend: TritonBackend, session: ort.InferenceSession, min_s: float
) -> None:
    """The whole processor at batch 32: decode JSON, stack, Triton, score JSON."""
    records = [_request_record(i) for i in range(32)]
    scorer = Scorer(backend, MANIFEST, max_inflight=2)
    raw = raw_rate(session, _batch(32), min_s).rate
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < min_s:
        await scorer.process(records)
        done += 32
    rate = done / (time.perf_counter() - started)
    report.add(
        "triton",
        "Scorer.process (decode + Triton shm + scores)",
        32,
        rate,
        "images/s",
        rate / raw,
        "one poll of 32 records at a time",
    )


def _request_record(n: int) -> Any:
    from aiokafka.structs import ConsumerRecord

    at = datetime(2026, 3, 1, tzinfo=UTC)
    image = np.random.default_rng(n).random((1, 224, 224), dtype=np.float32)
    body = (
        InferenceRequest(
            request_id=f"bench-{n}",
            radiograph_id=f"bench-{n}",
            patient_key=f"B-{n}",
            acquired_at=at,
            as_of=at,
            trigger="radiograph",
            image=Tensor.from_array(image),
            features=MANIFEST.names,
            clinical=[0.0] * len(MANIFEST.names),
            clinical_mask=[1.0] * len(MANIFEST.names),
            clinical_values={},
            news2=News2(),
        )
        .model_dump_json()
        .encode()
    )
    topic = topics.INFERENCE_REQUESTS
    return ConsumerRecord(topic, 0, n, 0, 0, b"k", body, None, 1, len(body), [])


async def latency(
    report: Report, url: str, metrics: int, rate: float, seconds: float
) -> float:
    """Part 2b: single requests at a steady rate; returns the model's p99 (ms)."""
    compute = raw_latencies_ms(_session(), 100)
    backend = TritonBackend(url, "cxr_fusion", MANIFEST, 60, regions=16)
    await backend.start()
    before = batching_counts(metrics)
    found = await offered_load_ms(backend, rate, seconds)
    after = batching_counts(metrics)
    await backend.close()
    executions = max(1, after[1] - before[1])
    mean_batch = (after[0] - before[0]) / executions
    p99_compute = percentile(compute, 99)
    report.add(
        "raw", "compute p50, one image at a time", 1, percentile(compute, 50), "ms"
    )
    report.add("raw", "compute p99, one image at a time", 1, p99_compute, "ms")
    note = f"{rate:.1f} requests/s, mean Triton batch {mean_batch:.1f}"
    report.add("triton", "offered load p50", 1, percentile(found, 50), "ms", None, note)
    report.add(
        "triton",
        "offered load p99 (ratio: / compute p99)",
        1,
        percentile(found, 99),
        "ms",
        percentile(found, 99) / p99_compute,
        note,
    )
    return p99_compute


# ---- part 3: the whole pipeline -------------------------------------------------


@dataclass(frozen=True)
class Send:
    """One record of the offered load, at ``at_s`` seconds after the start."""

    at_s: float
    topic: str
    key: str
    value: bytes
    kind: str


def _output(kind: str, key: str, value: bytes) -> Output:
    types = {"dicom": "application/dicom", "fhir": "application/fhir+json"}
    return Output(
        topic=topics.DICOM_INSTANCES if kind == "dicom" else topics.EHR_OBSERVATIONS,
        key=key,
        value=value,
        ce_type=f"org.cxrwatch.{kind}.v1",
        ce_id=new_event_id(),
        ce_source="benchmarks/inference_bench",
        content_type=types.get(kind, "x-application/hl7-v2+er7"),
    )


def _vitals(key: str, at: datetime, sick: bool, rng: random.Random) -> bytes:
    spo2, rr, hr, temp = (85, 30, 122, 38.9) if sick else (97, 15, 74, 36.8)
    vitals = [
        Vital("59408-5", "Oxygen saturation", spo2 + rng.randint(-1, 1), "%"),
        Vital("9279-1", "Respiratory rate", rr + rng.randint(-1, 1), "/min"),
        Vital("8867-4", "Heart rate", hr + rng.randint(-3, 3), "/min"),
        Vital("8310-5", "Body temperature", temp, "Cel"),
        Vital("3151-8", "Inhaled oxygen flow rate", 6.0 if sick else 0.0, "L/min"),
    ]
    stamp = f"{key}-{at:%Y%m%dT%H%M%S%f}"
    resources = [observation(f"{stamp}-{v.loinc}", key, v, at) for v in vitals]
    systolic = 98 if sick else 124
    resources.append(blood_pressure(f"{stamp}-bp", key, systolic, 70, at))
    return json.dumps(bundle(f"{stamp}-vitals", resources)).encode()


def _labs(key: str, at: datetime, sick: bool, control: str) -> bytes:
    wbc, lymph, crp, ldh = (15.0, 0.5, 180.0, 480.0) if sick else (6.5, 1.9, 4.0, 180.0)
    results = [
        LabResult("6690-2", "Leukocytes", wbc, "10*3/uL", "4.0-11.0"),
        LabResult("731-0", "Lymphocytes", lymph, "10*3/uL", "1.0-4.0"),
        LabResult("1988-5", "C reactive protein", crp, "mg/L", "0-5"),
        LabResult("2532-0", "Lactate dehydrogenase", ldh, "U/L", "140-280"),
    ]
    message = oru_r01(
        control,
        key,
        family="Bench",
        given=key,
        birth_date=date(1950, 6, 1),
        sex="F",
        collected_at=at,
        sent_at=at + timedelta(minutes=30),
        results=results,
    )
    return message.encode()


def offered_load(
    seconds: float, image_rate: float, observation_rate: float, anchor: datetime
) -> list[Send]:
    """Every record of the run, in send order.

    Each imaged patient (one in four sick) gets vitals (6 observations) and
    labs (4) two and one and a half seconds before the radiograph, dated two
    and three hours before it, so the join finds them and no clinical update
    re-scores. The rest of the observations are patients never imaged: stored
    and announced, never scored, as most of a hospital's clinical traffic is.
    """
    rng = random.Random(20260301)
    source = Path(str(get_testdata_file("RG1_J2KI.dcm")))
    lead = 3.0
    sends: list[Send] = []
    images = int(seconds * image_rate)
    for i in range(images):
        key, at_s, sick = f"BX-{i:05d}", lead + i / image_rate, i % 4 == 0
        acquired = anchor + timedelta(seconds=at_s)
        dicom = reidentify(
            source,
            patient_id=key,
            patient_name=f"Bench^{key}",
            birth_date=date(1950, 6, 1),
            sex="F",
            acquired_at=acquired,
            seed=f"bench-{key}",
        )
        vitals = _vitals(key, acquired - timedelta(hours=2), sick, rng)
        labs = _labs(key, acquired - timedelta(hours=3), sick, f"BX{i:06d}")
        sends += [
            Send(at_s - 2.0, topics.EHR_OBSERVATIONS, key, vitals, "fhir"),
            Send(at_s - 1.5, topics.EHR_OBSERVATIONS, key, labs, "hl7"),
            Send(at_s, topics.DICOM_INSTANCES, key, dicom, "dicom"),
        ]
    # Observations left per second for patients never imaged: half vitals
    # Bundles (6 each), half lab messages (4 each).
    left = max(0.0, observation_rate - image_rate * 10)
    pairs = int(seconds * left / 10)
    for n in range(pairs):
        key, at_s = f"BU-{n % 2000:05d}", lead + n * seconds / max(1, pairs)
        at = anchor + timedelta(seconds=at_s)
        sends.append(
            Send(
                at_s, topics.EHR_OBSERVATIONS, key, _vitals(key, at, False, rng), "fhir"
            )
        )
        sends.append(
            Send(
                at_s + 0.5 / max(left / 10, 1),
                topics.EHR_OBSERVATIONS,
                key,
                _labs(key, at, False, f"BU{n:07d}"),
                "hl7",
            )
        )
    return sorted(sends, key=lambda s: s.at_s)


async def send_load(bootstrap: str, sends: list[Send]) -> dict[str, float]:
    """Send each record at its time; return each radiograph's send time (epoch s)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=2, max_request_size=2**25, acks=1
    )
    await producer.start()
    sent: dict[str, float] = {}
    late = 0.0
    try:
        start = time.perf_counter()
        for record in sends:
            delay = start + record.at_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late = max(late, -delay)
            output = _output(record.kind, record.key, record.value)
            if record.kind == "dicom":
                sent[record.key] = time.time()
            await producer.send(
                record.topic,
                record.value,
                key=record.key.encode(),
                headers=output.headers(),
            )
        await producer.flush()
    finally:
        await producer.stop()
    print(f"offered load sent; the generator ran at most {late:.2f} s late", flush=True)
    return sent


async def read_times(bootstrap: str) -> dict[str, Any]:
    """Record times (epoch s) per patient: radiograph events, first scores, alerts."""
    consumer = AIOKafkaConsumer(
        topics.IMAGING_RADIOGRAPHS,
        topics.INFERENCE_REQUESTS,
        topics.RISK_SCORES,
        topics.ALERTS,
        topics.DEADLETTER,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        fetch_max_bytes=2**26,
        max_partition_fetch_bytes=2**25,
    )
    await consumer.start()
    found: dict[str, Any] = {"radiograph": {}, "request": {}, "score": {}}
    found |= {"score_id": {}, "alert": {}}
    found["dead_letters"] = 0
    try:
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            idle = 0 if batch else idle + 1
            for records in batch.values():
                for r in records:
                    _note(found, r)
    finally:
        await consumer.stop()
    return found


def _note(found: dict[str, Any], record: Any) -> None:
    at, key = record.timestamp / 1000, (record.key or b"").decode()
    if record.topic == topics.DEADLETTER:
        found["dead_letters"] += 1
    elif record.topic == topics.IMAGING_RADIOGRAPHS:
        found["radiograph"].setdefault(key, at)
    elif record.topic == topics.INFERENCE_REQUESTS:
        found["request"][key] = min(at, found["request"].get(key, at))
    elif record.topic == topics.RISK_SCORES:
        score = json.loads(record.value)
        if not score.get("shadow"):
            found["score_id"][score["score_id"]] = at
            if at < found["score"].get(key, float("inf")):
                found["score"][key] = at
    else:
        alert = json.loads(record.value)
        found["alert"].setdefault(key, (at, alert["score_id"]))


def _free_run(count: int) -> int:
    for _ in range(200):
        base = random.randint(20000, 40000)
        if all(_is_free(p) for p in range(base, base + count)):
            return base
    raise RuntimeError("no run of free ports")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def end_to_end(
    report: Report,
    seconds: float,
    image_rate: float,
    observation_rate: float,
    compute_p99: float,
) -> None:
    """Part 3: the embedded stack under the offered load."""
    anchor = datetime.now(UTC).replace(microsecond=0)
    built = time.perf_counter()
    sends = offered_load(seconds, image_rate, observation_rate, anchor)
    print(
        f"built {len(sends)} records in {time.perf_counter() - built:.1f} s",
        flush=True,
    )
    run = uuid.uuid4().hex[:8]
    settings = EmbeddedSettings(
        run_dir=REPO / ".run" / f"bench-{run}",
        redis_prefix=f"cxr-bench-{run}",
        redis_db=2,
        kafka_port=free_port(),
        triton_http_port=free_port(),
        triton_grpc_port=free_port(),
        triton_metrics_port=free_port(),
        api_port=free_port(),
        health_base_port=_free_run(5),
        model_repository=REPO / "models",
        triton_venv=REPO / ".venv-triton",
    )
    stack = Stack(settings)
    try:
        stack.start()
        before = batching_counts(settings.triton_metrics_port)
        cpu_before = _stack_cpu(stack)
        loaded = time.perf_counter()
        sent = asyncio.run(send_load(stack.bootstrap, sends))
        in_run = latency_summaries(settings.triton_metrics_port)
        drained = time.perf_counter()
        lag = wait_until_drained(stack.bootstrap, timeout_s=300, settle_s=3)
        print(
            f"drained {time.perf_counter() - drained:.0f} s after the last record; "
            f"lag {lag}",
            flush=True,
        )
        after = batching_counts(settings.triton_metrics_port)
        _cpu_rows(report, cpu_before, _stack_cpu(stack), time.perf_counter() - loaded)
        found = asyncio.run(read_times(stack.bootstrap))
    finally:
        stack.stop()
        _clear_redis(stack.redis_url, settings.redis_prefix)
    _e2e_rows(report, sent, found, compute_p99, (before, after), in_run)


def _stack_cpu(stack: Stack) -> dict[str, float]:
    """CPU seconds so far of each component (its whole process session)."""
    return {child.name: session_cpu_s(child.process.pid) for child in stack.children}


def _cpu_rows(
    report: Report, before: dict[str, float], after: dict[str, float], wall_s: float
) -> None:
    """Where the CPU went: cores each component used over the load and drain."""
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    for name, cpu_s in sorted(used.items(), key=lambda item: -item[1]):
        report.add("e2e", f"CPU of {name}", "-", cpu_s / wall_s, "cores", None)
    report.add("e2e", "CPU of the stack", "-", sum(used.values()) / wall_s, "cores")


def _clear_redis(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


def _e2e_rows(
    report: Report,
    sent: dict[str, float],
    found: dict[str, Any],
    compute_p99: float,
    counts: tuple[tuple[int, int], tuple[int, int]],
    in_run: dict[str, dict[float, float]],
) -> None:
    radiograph, request, score = found["radiograph"], found["request"], found["score"]
    spans = {
        "DICOM sent -> radiograph event": [
            radiograph[k] - sent[k] for k in sent if k in radiograph
        ],
        "radiograph event -> inference request": [
            request[k] - radiograph[k] for k in radiograph if k in request
        ],
        "inference request -> score published": [
            score[k] - request[k] for k in request if k in score
        ],
        "radiograph event -> score published": [
            score[k] - radiograph[k] for k in radiograph if k in score
        ],
        "DICOM sent -> score published": [
            score[k] - sent[k] for k in sent if k in score
        ],
        "score -> alert stored and published": [
            at - found["score_id"][sid]
            for at, sid in found["alert"].values()
            if sid in found["score_id"]
        ],
    }
    (requests_before, runs_before), (requests_after, runs_after) = counts
    mean_batch = (requests_after - requests_before) / max(1, runs_after - runs_before)
    note = (
        f"{len(score)}/{len(sent)} radiographs scored, {len(found['alert'])} alerts, "
        f"{found['dead_letters']} dead letters, mean Triton batch {mean_batch:.1f}"
    )
    print(note, flush=True)
    for stage in ("request", "queue", "compute_infer"):
        quantiles = in_run.get(stage, {})
        for q in (0.5, 0.99):
            if q in quantiles:
                report.add(
                    "e2e",
                    f"Triton {stage} p{q * 100:.0f} (last minute of the load)",
                    "-",
                    quantiles[q],
                    "ms",
                    None,
                    "Triton's own summary",
                )
    in_run_p99 = in_run.get("compute_infer", {}).get(0.99)
    for what, values in spans.items():
        if not values:
            report.add("e2e", what, "-", float("nan"), "ms", None, "no samples")
            continue
        ms = [v * 1000 for v in values]
        report.add(
            "e2e", f"{what} p50", "-", percentile(ms, 50), "ms", None, f"n={len(ms)}"
        )
        ratio = percentile(ms, 99) / compute_p99 if "score" in what else None
        note = "ratio: / compute p99 alone"
        if ratio is not None and in_run_p99:
            note += f"; {percentile(ms, 99) / in_run_p99:.2f} of Triton's in-run p99"
        report.add("e2e", f"{what} p99", "-", percentile(ms, 99), "ms", ratio, note)


def write_csv(path: Path, rows: list[Row]) -> None:
    """The rows as CSV."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["part", "what", "batch", "value", "unit", "ratio", "note"])
        for r in rows:
            writer.writerow(
                [r.part, r.what, r.batch, f"{r.value:.3f}", r.unit, r.ratio, r.note]
            )


def main(argv: list[str] | None = None) -> int:
    """Run the three parts and print the table; 0 unless a part failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="per figure")
    parser.add_argument("--load-seconds", type=float, default=15.0)
    parser.add_argument("--e2e-seconds", type=float, default=60.0)
    parser.add_argument("--image-rate", type=float, default=10.0)
    parser.add_argument("--observation-rate", type=float, default=500.0)
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument(
        "--e2e-only",
        action="store_true",
        help="only the model's compute p99 (raw session) and part 3",
    )
    parser.add_argument("--csv", type=Path, default=None, help="also write rows here")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])

    load = os.getloadavg()
    print(
        f"inference benchmark: {os.cpu_count()} CPUs, load average "
        f"{load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; model threads {THREADS} "
        f"(spinning {SPINNING}); "
        f"onnxruntime {ort.__version__}",
        flush=True,
    )
    print(
        f"{'part':<9} {'what':<44} {'batch':>5} {'value':>10} {'unit':<9} {'ratio':>6}"
    )
    report = Report()
    log = REPO / ".run" / "logs" / f"bench-triton-{os.getpid()}.log"
    if args.e2e_only:
        compute = raw_latencies_ms(_session(), 200)
        compute_p99 = percentile(compute, 99)
        report.add(
            "raw", "compute p50, one image at a time", 1, percentile(compute, 50), "ms"
        )
        report.add("raw", "compute p99, one image at a time", 1, compute_p99, "ms")
    else:
        with triton_server(log) as (url, metrics, server):
            raw8 = asyncio.run(
                throughput(report, url, server, args.rounds, args.min_seconds)
            )
            compute_p99 = asyncio.run(
                latency(report, url, metrics, raw8 / 2, args.load_seconds)
            )
    if args.e2e_only or not args.skip_e2e:
        end_to_end(
            report,
            args.e2e_seconds,
            args.image_rate,
            args.observation_rate,
            compute_p99,
        )
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    if args.csv is not None:
        write_csv(args.csv, report.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
