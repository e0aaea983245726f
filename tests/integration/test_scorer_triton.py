"""The scorer against a real Triton server and a real broker.

One tritonserver (the nvidia-pytriton wheel's, through
``scripts/triton/start_triton.sh``) serves a model repository laid out in a
temporary folder from ``models/cxr_fusion``:

* ``cxr_fusion``: the model as shipped (version 1);
* ``cxr_fusion_fp16``: the same ONNX file behind a config that asks for the
  image in FP16, as version 2 (a small Python-backend adapter casts it back):
  the shadow model of these tests;
* ``cxr_fusion_k11``: a deliberately wrong copy declaring 11 clinical inputs;
* ``cxr_fusion_uint8``: a wrong copy declaring the image as UINT8.

The same behaviour tests run over ONNX Runtime in process and over Triton with
the image on the wire and through shared memory. The last test stops and
restarts the server under a running scorer. Expected scores come from a bare
onnxruntime session on the same ONNX file, in this process.
"""

import asyncio
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from cxrwatch.core import topics
from cxrwatch.core.errors import ContractMismatch, InvalidInput
from cxrwatch.core.events import RiskScore
from cxrwatch.core.kafka import ensure_topics
from cxrwatch.core.manifest import load_manifest
from cxrwatch.core.stream import StreamService
from cxrwatch.scorer.backends import InferenceBackend, OnnxRuntimeBackend, TritonBackend
from cxrwatch.scorer.service import Scorer, ScorerSettings
from tritonclient.grpc.aio import InferenceServerClient

from tests.servers import REPO, free_port, process
from tests.unit.scorer.test_scorer import record, request

pytestmark = pytest.mark.integration

SOURCE = REPO / "models" / "cxr_fusion"
MANIFEST = load_manifest(SOURCE / "features.json")
MODELS = ("cxr_fusion", "cxr_fusion_fp16", "cxr_fusion_k11", "cxr_fusion_uint8")
READY_TIMEOUT_S = 120.0

FP16_ADAPTER = '''"""Test-only model: the image in FP16, the FP32 ONNX file inside."""
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

NAMES = ("image", "clinical", "clinical_mask")


class TritonPythonModel:
    def initialize(self, args):
        folder = Path(args["model_repository"]) / args["model_version"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
        )

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {
                n: pb_utils.get_input_tensor_by_name(request, n)
                .as_numpy()
                .astype(np.float32)
                for n in NAMES
            }
            p, risk = self.session.run(["p_critical", "progression_risk"], feeds)
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("p_critical", p),
                        pb_utils.Tensor("progression_risk", risk),
                    ]
                )
            )
        return responses
'''


def lay_out_repository(root: Path) -> Path:
    """The test's model repository; every copy shares the one ONNX file."""
    config = (SOURCE / "config.pbtxt").read_text("utf-8")
    config = config.replace(
        'value: { string_value: "2" }', 'value: { string_value: "1" }'
    )
    variants = {
        "cxr_fusion": (config, "1", SOURCE / "1" / "model.py"),
        "cxr_fusion_fp16": (
            config.replace("TYPE_FP32", "TYPE_FP16", 1),  # the first is the image
            "2",
            None,
        ),
        "cxr_fusion_k11": (
            config.replace("dims: [ 12 ]", "dims: [ 11 ]", 1),
            "1",
            SOURCE / "1" / "model.py",
        ),
        "cxr_fusion_uint8": (
            config.replace("TYPE_FP32", "TYPE_UINT8", 1),
            "1",
            SOURCE / "1" / "model.py",
        ),
    }
    for name, (text, version, adapter) in variants.items():
        folder = root / name / version
        folder.mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(
            text.replace('name: "cxr_fusion"', f'name: "{name}"'), "utf-8"
        )
        (folder / "model.onnx").symlink_to(SOURCE / "1" / "model.onnx")
        if adapter is None:
            (folder / "model.py").write_text(FP16_ADAPTER, "utf-8")
        else:
            (folder / "model.py").symlink_to(adapter)
        manifest = json.loads((SOURCE / "features.json").read_text("utf-8"))
        manifest["model"] = name
        (root / name / "features.json").write_text(json.dumps(manifest), "utf-8")
    return root


class TritonServer:
    """A tritonserver on fixed loopback ports that a test may stop and start."""

    def __init__(self, repository: Path, venv: Path, log: Path) -> None:
        self.repository = repository
        self.venv = venv
        self.log = log
        self.http, self.grpc, self.metrics = free_port(), free_port(), free_port()
        self._context: Any = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc}"

    def start(self) -> None:
        argv = ["bash", str(REPO / "scripts" / "triton" / "start_triton.sh")]
        argv += [str(self.repository), str(self.http), str(self.grpc)]
        argv.append(str(self.metrics))
        env = {
            **os.environ,
            "TRITON_VENV": str(self.venv),
            "TRITON_MODELS": " ".join(MODELS),
        }
        self._context = process(argv, self.log, env)
        server: subprocess.Popen[bytes] = self._context.__enter__()
        deadline = time.monotonic() + READY_TIMEOUT_S
        url = f"http://127.0.0.1:{self.http}/v2/health/ready"
        while time.monotonic() < deadline:
            if server.poll() is not None:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"tritonserver exited; log {self.log}:\n{tail}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.3)
        raise TimeoutError(f"Triton not ready after {READY_TIMEOUT_S} s; {self.log}")

    def stop(self) -> None:
        if self._context is not None:
            self._context.__exit__(None, None, None)
            self._context = None


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    venv = Path(os.environ.get("TRITON_VENV", REPO / ".venv-triton")).resolve()
    if not (venv / "bin" / "python").exists():
        pytest.skip(f"no Triton venv at {venv} (run `make deps`)")
    repository = lay_out_repository(tmp_path_factory.mktemp("models"))
    log = REPO / "test-output" / "logs" / f"triton-scorer-{os.getpid()}.log"
    server = TritonServer(repository, venv, log)
    server.start()
    yield server
    server.stop()


def triton_backend(
    server: TritonServer, model: str = "cxr_fusion", shm: str = "off"
) -> TritonBackend:
    return TritonBackend(
        server.url,
        model,
        MANIFEST,
        30.0,
        shared_memory=shm,  # type: ignore[arg-type]
        regions=2,
    )


@pytest.fixture(params=["onnxruntime", "triton-wire", "triton-shm"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[InferenceBackend]:
    made: InferenceBackend
    if request.param == "onnxruntime":
        made = OnnxRuntimeBackend(
            SOURCE / "1" / "model.onnx", "cxr_fusion", MANIFEST, 1
        )
    else:
        server = request.getfixturevalue("triton")
        shm = "system" if request.param == "triton-shm" else "off"
        made = triton_backend(server, shm=shm)
    await made.start()
    yield made
    await made.close()


def bare_session_p(requests: list[Any]) -> np.ndarray:
    session = ort.InferenceSession(
        str(SOURCE / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    p, _ = session.run(
        None,
        {
            "image": np.stack([r.image.to_array() for r in requests]),
            "clinical": np.asarray([r.clinical for r in requests], np.float32),
            "clinical_mask": np.asarray(
                [r.clinical_mask for r in requests], np.float32
            ),
        },
    )
    return np.asarray(p[:, 0])


def scores_of(outcomes: list[Any]) -> list[RiskScore]:
    return [
        RiskScore.model_validate_json(output.value)
        for outcome in outcomes
        if isinstance(outcome, list)
        for output in outcome
    ]


async def test_scores_keep_order_equal_the_bare_session_and_record_the_version(
    backend: InferenceBackend,
) -> None:
    good = [request(i, spo2=98 - 3 * i) for i in range(5)]
    wrong = request(9, 90).model_copy(update={"features": ["spo2"]})
    records = [record(i, r.model_dump_json().encode()) for i, r in enumerate(good)]
    records.insert(3, record(30, wrong.model_dump_json().encode()))
    scorer = Scorer(backend, MANIFEST, micro_batch_size=2, max_inflight=2)

    outcomes = await scorer.process(records)
    again = await scorer.process(records)

    assert isinstance(outcomes[3], InvalidInput)
    scores = scores_of(outcomes)
    assert [s.request_id for s in scores] == [r.request_id for r in good]
    assert [s.p_critical for s in scores] == pytest.approx(
        list(bare_session_p(good)), abs=1e-5
    )
    assert {s.model_version for s in scores} == {"1"}
    assert [s.score_id for s in scores] == [s.score_id for s in scores_of(again)]


async def test_the_batch_size_is_the_models_not_one(backend: InferenceBackend) -> None:
    assert backend.max_batch_size == 32
    many = [request(i, spo2=95) for i in range(33)]
    outcomes = await Scorer(backend, MANIFEST).process(
        [record(i, r.model_dump_json().encode()) for i, r in enumerate(many)]
    )
    assert len(scores_of(outcomes)) == 33


async def test_shared_memory_regions_are_registered_once_and_released(
    triton: TritonServer,
) -> None:
    backend = triton_backend(triton, shm="auto")  # loopback: shared memory
    await backend.start()
    assert backend.uses_shared_memory
    scorer = Scorer(backend, MANIFEST, max_inflight=2)
    for _ in range(3):
        await scorer.process([record(0, request(1, 93).model_dump_json().encode())])
    client = InferenceServerClient(triton.url)
    held = await client.get_system_shared_memory_status(as_json=True)
    mine = [n for n in held.get("regions", {}) if f"-{os.getpid()}-" in n]
    assert len(mine) == 2

    await backend.close()

    held = await client.get_system_shared_memory_status(as_json=True)
    assert not [n for n in held.get("regions", {}) if f"-{os.getpid()}-" in n]
    await client.close()


async def test_a_wrong_copy_with_eleven_clinical_inputs_is_refused(
    triton: TritonServer,
) -> None:
    with pytest.raises(ContractMismatch) as refused:
        await triton_backend(triton, "cxr_fusion_k11").start()
    assert "'clinical' has shape [11], manifest says [12]" in str(refused.value)


def test_the_scorer_process_refuses_to_start_with_a_clear_message(
    triton: TritonServer, kafka_bootstrap: str
) -> None:
    env = {
        **os.environ,
        "CXRWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CXRWATCH_MODEL_REPOSITORY": str(triton.repository),
        "CXRWATCH_MODEL_NAME": "cxr_fusion_k11",
        "CXRWATCH_TRITON_URL": triton.url,
    }
    finished = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "-m", "cxrwatch.scorer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert finished.returncode != 0
    assert "ContractMismatch" in finished.stderr
    assert "'clinical' has shape [11], manifest says [12]" in finished.stderr


async def test_an_integer_image_is_refused(triton: TritonServer) -> None:
    with pytest.raises(ContractMismatch, match="'image' is UINT8, expected FP32"):
        await triton_backend(triton, "cxr_fusion_uint8").start()


@pytest.mark.parametrize("shm", ["off", "auto"])
async def test_the_fp16_shadow_scores_the_same_requests_as_version_2(
    triton: TritonServer, shm: str
) -> None:
    primary = triton_backend(triton, shm=shm)
    shadow = triton_backend(triton, "cxr_fusion_fp16", shm=shm)
    scorer = Scorer(primary, MANIFEST, shadow=shadow)
    await scorer.start()
    good = [request(i, spo2=97 - 4 * i) for i in range(4)]

    outcomes = await scorer.process(
        [record(i, r.model_dump_json().encode()) for i, r in enumerate(good)]
    )
    await scorer.stop()

    made = scores_of(outcomes)
    main, candidate = made[0::2], made[1::2]
    assert [(s.shadow, s.model_version) for s in main] == [(False, "1")] * 4
    assert [(s.shadow, s.model_version) for s in candidate] == [(True, "2")] * 4
    assert [s.model_name for s in candidate] == ["cxr_fusion_fp16"] * 4
    assert [s.request_id for s in candidate] == [r.request_id for r in good]
    assert not {s.score_id for s in main} & {s.score_id for s in candidate}
    # An image rounded to FP16 moves p by far less than a band (0.3 wide).
    assert [s.p_critical for s in candidate] == pytest.approx(
        [s.p_critical for s in main], abs=5e-3
    )


async def _produce(bootstrap: str, topic: str, bodies: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2**24)
    await producer.start()
    try:
        for n, body in enumerate(bodies):
            await producer.send_and_wait(topic, body, key=f"CXR-{n % 3}".encode())
    finally:
        await producer.stop()


async def _scored(bootstrap: str, wanted: set[str], timeout: float) -> set[str]:
    consumer = AIOKafkaConsumer(
        topics.RISK_SCORES,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
        fetch_max_bytes=2**25,
    )
    await consumer.start()
    seen: set[str] = set()
    try:
        async with asyncio.timeout(timeout):
            while not wanted <= seen:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    seen |= {json.loads(r.value)["request_id"] for r in records}
    except TimeoutError:
        pass
    finally:
        await consumer.stop()
    return seen & wanted


async def test_a_triton_restart_pauses_the_scorer_and_loses_nothing(
    triton: TritonServer, kafka_bootstrap: str
) -> None:
    run = uuid.uuid4().hex[:8]
    source = f"scorer-restart-{run}"
    settings = ScorerSettings(
        kafka_bootstrap=kafka_bootstrap, retry_backoff_max_s=1, health_port=0
    )
    ensure_topics(settings, [source, topics.RISK_SCORES, topics.DEADLETTER], 1)
    scorer = Scorer(triton_backend(triton, shm="auto"), MANIFEST, max_inflight=2)
    scorer.name = f"scorer-{run}"  # a consumer group of its own
    scorer.input_topics = (source,)
    service = StreamService(scorer, settings)
    running = asyncio.create_task(service.run())

    def bodies(first: int) -> tuple[set[str], list[bytes]]:
        made = [
            request(i, spo2=96).model_copy(update={"request_id": f"{run}-{i}"})
            for i in range(first, first + 10)
        ]
        return {r.request_id for r in made}, [
            r.model_dump_json().encode() for r in made
        ]

    before, sent = bodies(0)
    await _produce(kafka_bootstrap, source, sent)
    assert await _scored(kafka_bootstrap, before, 60) == before

    triton.stop()
    during, sent = bodies(10)
    await _produce(kafka_bootstrap, source, sent)
    async with asyncio.timeout(30):
        while service.health.ready:
            await asyncio.sleep(0.2)
    assert "Triton" in service.health.reasons["dependencies"]
    assert await _scored(kafka_bootstrap, during, 2) == set()

    await asyncio.to_thread(triton.start)
    assert await _scored(kafka_bootstrap, during, 60) == during
    assert service.health.ready

    service.request_stop()
    await asyncio.wait_for(running, 30)
    letters = await _dead_letters(kafka_bootstrap, source)
    assert letters == []


async def _dead_letters(bootstrap: str, source: str) -> list[dict[str, Any]]:
    consumer = AIOKafkaConsumer(
        topics.DEADLETTER,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    found: list[dict[str, Any]] = []
    try:
        batch = await consumer.getmany(timeout_ms=2000)
        for records in batch.values():
            found += [json.loads(r.value) for r in records]
    finally:
        await consumer.stop()
    return [letter for letter in found if letter["source_topic"] == source]


def test_the_served_session_takes_the_configs_thread_settings(
    triton: TritonServer,
) -> None:
    # The CPU config turns onnxruntime's spinning off; the adapter must pass it
    # on, or the model's idle threads take the other services' cores. (The
    # test repository runs one thread per model, see lay_out_repository.)
    loaded = re.findall(
        r"cxr_fusion loaded path=\S+/cxr_fusion/1/model.onnx "
        r"intra_op_threads=(\d+) allow_spinning=(\d) providers=(\[[^]]*\])",
        triton.log.read_text(errors="replace"),
    )
    assert loaded, "the adapter logged no session settings"
    # once per (re)start of the server; no `providers` parameter: the CPU only
    assert set(loaded) == {("1", "0", "['CPUExecutionProvider']")}
