"""Measures cxr_fusion's speed: onnxruntime in process, and a Triton server.

``python models/benchmark.py`` prints images/s at batch 1, 8 and 32 with
onnxruntime in this process. With ``--triton-url 127.0.0.1:8001`` it also
sends batches of 8 over gRPC to a running Triton and prints latency
percentiles. Inputs are random: speed does not depend on the values.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

ONNX_PATH = Path(__file__).resolve().parent / "cxr_fusion" / "1" / "model.onnx"
FEATURES = 12


def random_inputs(batch: int) -> dict[str, npt.NDArray[np.float32]]:
    """Returns one batch of model inputs in the contract's shapes."""
    rng = np.random.default_rng(batch)
    return {
        "image": rng.random((batch, 1, 224, 224), dtype=np.float32),
        "clinical": rng.normal(size=(batch, FEATURES)).astype(np.float32),
        "clinical_mask": np.ones((batch, FEATURES), dtype=np.float32),
    }


def onnxruntime_throughput(threads: int, batch: int, seconds: float) -> float:
    """Returns images/s of repeated runs at one batch size, after a warm-up."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        str(ONNX_PATH), options, providers=["CPUExecutionProvider"]
    )
    feeds = random_inputs(batch)
    session.run(None, feeds)
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        session.run(None, feeds)
        runs += 1
    return runs * batch / (time.perf_counter() - started)


def triton_latencies(url: str, batch: int, count: int) -> list[float]:
    """Returns the wall time in ms of ``count`` sequential gRPC requests."""
    import tritonclient.grpc as triton_grpc  # only needed for this measurement

    client = triton_grpc.InferenceServerClient(url)
    requests = []
    for name, array in random_inputs(batch).items():
        tensor = triton_grpc.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        requests.append(tensor)
    client.infer("cxr_fusion", requests)
    latencies = []
    for _ in range(count):
        started = time.perf_counter()
        client.infer("cxr_fusion", requests)
        latencies.append((time.perf_counter() - started) * 1000)
    client.close()
    return latencies


def main() -> int:
    """Runs the measurements and prints one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--triton-url", help="Triton gRPC address, e.g. :8001")
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()

    for batch in (1, 8, 32):
        rate = onnxruntime_throughput(args.threads, batch, args.seconds)
        print(f"onnxruntime batch {batch:>2}: {rate:6.1f} images/s")
    if args.triton_url:
        latencies = triton_latencies(args.triton_url, 8, args.requests)
        cuts = statistics.quantiles(latencies, n=100)
        print(
            f"triton batch 8: p50 {cuts[49]:.1f} ms, p90 {cuts[89]:.1f} ms "
            f"over {len(latencies)} requests ({8000 / cuts[49]:.1f} images/s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
