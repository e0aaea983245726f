"""Drive a Triton model over gRPC at several batch sizes and concurrencies.

pip's ``tritonclient`` does not ship ``perf_analyzer`` (it is a separate
``perf-analyzer`` package and a binary in the NGC SDK image), so the GPU
benchmark carries this small generator, which needs only ``tritonclient[grpc]``
and numpy. For each (transport, batch, concurrency) it keeps ``concurrency``
requests of ``batch`` images always in flight for ``--seconds`` and writes one
CSV row: images/s, requests/s, p50 and p99 latency in ms, and Triton's mean
executed batch over the point (from its metrics, when reachable).

Transports: ``wire`` (binary tensors in the gRPC message) and ``shm`` (the
image through system shared memory, one registered region per worker, as the
scorer does); ``shm`` needs the client on the server's host.

Usage::

    python scripts/gpu/load_generator.py --url 127.0.0.1:18001 \\
        --metrics-url http://127.0.0.1:18002/metrics --batches 1,8,32 \\
        --concurrency 1,4,16 --seconds 8 --csv out.csv
"""

import argparse
import asyncio
import csv
import logging
import os
import re
import sys
import time
import urllib.request

import numpy as np
import tritonclient.utils.shared_memory as system_shm
from tritonclient.grpc import InferInput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

logger = logging.getLogger("load_generator")

IMAGE = (1, 224, 224)
FEATURES = 12
FIELDS = [
    "model",
    "transport",
    "batch",
    "concurrency",
    "seconds",
    "images_per_s",
    "requests_per_s",
    "p50_ms",
    "p99_ms",
    "mean_executed_batch",
]


def executions(metrics_url: str | None, model: str) -> tuple[int, int] | None:
    """Triton's (images inferred, executions) for ``model``, if reachable."""
    if not metrics_url:
        return None
    try:
        with urllib.request.urlopen(metrics_url, timeout=5) as response:  # noqa: S310
            text = response.read().decode()
    except OSError:
        return None
    found = []
    for name in ("nv_inference_count", "nv_inference_exec_count"):
        match = re.search(rf'^{name}{{model="{model}".*}} (\d+)', text, re.M)
        found.append(int(match.group(1)) if match else 0)
    return found[0], found[1]


class Worker:
    """One request always in flight, on the wire or through its own region."""

    def __init__(
        self, client: InferenceServerClient, model: str, batch: int, region: str
    ) -> None:
        rng = np.random.default_rng(batch)
        self.client, self.model, self.batch = client, model, batch
        self.image = rng.random((batch, *IMAGE), dtype=np.float32)
        self.clinical = rng.standard_normal((batch, FEATURES)).astype(np.float32)
        self.mask = np.ones((batch, FEATURES), dtype=np.float32)
        self.region = region
        self.handle: system_shm.SharedMemoryRegion | None = None

    async def open_region(self) -> None:
        """Create and register this worker's region; copy the image in once."""
        key = f"/{self.region}"
        self.handle = system_shm.create_shared_memory_region(
            self.region, key, self.image.nbytes
        )
        await self.client.register_system_shared_memory(
            self.region, key, self.image.nbytes
        )

    def inputs(self) -> list[InferInput]:
        """The request's tensors; the image from the region when there is one."""
        image = InferInput("image", list(self.image.shape), "FP32")
        if self.handle is not None:
            # The copy a real client makes for each batch.
            system_shm.set_shared_memory_region(self.handle, [self.image])
            image.set_shared_memory(self.region, self.image.nbytes)
        else:
            image.set_data_from_numpy(self.image)
        clinical = InferInput("clinical", [self.batch, FEATURES], "FP32")
        clinical.set_data_from_numpy(self.clinical)
        mask = InferInput("clinical_mask", [self.batch, FEATURES], "FP32")
        mask.set_data_from_numpy(self.mask)
        return [image, clinical, mask]

    async def run(self, until: float, latencies: list[float]) -> int:
        """Send requests back to back until ``until``; return images done."""
        done = 0
        while time.perf_counter() < until:
            started = time.perf_counter()
            await self.client.infer(self.model, self.inputs())
            latencies.append((time.perf_counter() - started) * 1000)
            done += self.batch
        return done

    async def close(self) -> None:
        """Unregister and free the region."""
        if self.handle is None:
            return
        for _ in range(20):
            try:
                await self.client.unregister_system_shared_memory(self.region)
                break
            except InferenceServerException as exc:
                # Triton lets go of a region a moment after the response.
                if "in use" not in str(exc):
                    raise
                await asyncio.sleep(0.1)
        system_shm.destroy_shared_memory_region(self.handle)


async def point(
    args: argparse.Namespace, transport: str, batch: int, concurrency: int
) -> dict[str, object]:
    """One measured point."""
    client = InferenceServerClient(args.url)
    workers = [
        Worker(client, args.model, batch, f"gpubench-{os.getpid()}-{n}")
        for n in range(concurrency)
    ]
    if transport == "shm":
        for worker in workers:
            await worker.open_region()
    warm: list[float] = []
    await asyncio.gather(*(w.run(time.perf_counter() + 1.0, warm) for w in workers))
    before = executions(args.metrics_url, args.model)
    latencies: list[float] = []
    started = time.perf_counter()
    until = started + args.seconds
    images = sum(await asyncio.gather(*(w.run(until, latencies) for w in workers)))
    elapsed = time.perf_counter() - started
    after = executions(args.metrics_url, args.model)
    for worker in workers:
        await worker.close()
    await client.close()
    mean_batch = ""
    if before is not None and after is not None and after[1] > before[1]:
        mean_batch = f"{(after[0] - before[0]) / (after[1] - before[1]):.2f}"
    return {
        "model": args.model,
        "transport": transport,
        "batch": batch,
        "concurrency": concurrency,
        "seconds": f"{elapsed:.2f}",
        "images_per_s": f"{images / elapsed:.1f}",
        "requests_per_s": f"{len(latencies) / elapsed:.1f}",
        "p50_ms": f"{np.percentile(latencies, 50):.2f}",
        "p99_ms": f"{np.percentile(latencies, 99):.2f}",
        "mean_executed_batch": mean_batch,
    }


async def sweep(args: argparse.Namespace) -> int:
    """Every point, each row printed and written as soon as it is measured."""
    transports = args.transports.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    with open(args.csv, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        print(",".join(FIELDS), flush=True)
        for transport in transports:
            for batch in batches:
                for concurrency in concurrencies:
                    row = await point(args, transport, batch, concurrency)
                    writer.writerow(row)
                    handle.flush()
                    print(",".join(str(row[f]) for f in FIELDS), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the sweep."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="127.0.0.1:8001", help="Triton gRPC")
    parser.add_argument("--metrics-url", default=None, help="Triton /metrics")
    parser.add_argument("--model", default="cxr_fusion")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--transports", default="wire,shm")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--csv", default="gpu_bench.csv")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    return asyncio.run(sweep(args))


if __name__ == "__main__":
    sys.exit(main())
