"""The scorer with the in-process ONNX Runtime backend: batching, order, refusals."""

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from aiokafka.structs import ConsumerRecord
from cxrwatch.core import topics
from cxrwatch.core.errors import ContractMismatch, InvalidInput
from cxrwatch.core.events import InferenceRequest, News2, RiskScore, Tensor
from cxrwatch.core.manifest import load_manifest
from cxrwatch.scorer.backends import Batch, OnnxRuntimeBackend, check_inputs
from cxrwatch.scorer.service import Scorer

MODEL_DIR = Path(__file__).parents[3] / "models" / "cxr_fusion"
MANIFEST = load_manifest(MODEL_DIR / "features.json")


def request(n: int, spo2: float) -> InferenceRequest:
    rng = np.random.default_rng(7)  # one image: only SpO2 differs
    image = rng.random((1, 224, 224), dtype=np.float32)
    values = {f.name: f.normal for f in MANIFEST.features}
    values["spo2"] = spo2
    return InferenceRequest(
        request_id=f"req-{n}",
        radiograph_id=f"rad-{n}",
        patient_key=f"CXR-{n}",
        acquired_at=datetime(2026, 3, 1, tzinfo=UTC),
        as_of=datetime(2026, 3, 1, tzinfo=UTC),
        trigger="radiograph",
        image=Tensor.from_array(image),
        features=MANIFEST.names,
        clinical=[MANIFEST.by_name[k].normalise(v) for k, v in values.items()],
        clinical_mask=[1.0] * len(values),
        clinical_values=values,
        news2=News2(),
    )


def record(offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(
        topics.INFERENCE_REQUESTS, 0, offset, 0, 0, b"k", value, None, 1, len(value), []
    )


class CountingBackend(OnnxRuntimeBackend):
    """Counts the batches it is given."""

    calls: list[int]

    async def infer(self, batch: Batch):  # type: ignore[no-untyped-def]
        self.calls.append(len(batch))
        return await super().infer(batch)


@pytest.fixture
async def backend() -> CountingBackend:
    onnx = CountingBackend(MODEL_DIR / "1" / "model.onnx", "cxr_fusion", MANIFEST, 1)
    onnx.calls = []
    onnx.max_batch_size = 2
    await onnx.start()
    return onnx


async def test_scores_in_order_in_micro_batches_and_isolates_bad_records(
    backend: CountingBackend,
) -> None:
    good = [request(i, spo2=97 - 3 * i) for i in range(5)]
    wrong_features = request(9, 90).model_copy(update={"features": ["spo2"]})
    records = [record(i, r.model_dump_json().encode()) for i, r in enumerate(good)]
    records.insert(2, record(90, b"{not json"))
    records.insert(4, record(91, wrong_features.model_dump_json().encode()))

    outcomes = await Scorer(backend, MANIFEST).process(records)

    assert [type(o) for o in outcomes] == [
        list,
        list,
        InvalidInput,
        list,
        InvalidInput,
        list,
        list,
    ]
    assert backend.calls == [2, 2, 1]
    scores = [
        RiskScore.model_validate_json(o[0].value)
        for o in outcomes
        if isinstance(o, list)
    ]
    assert [s.request_id for s in scores] == [r.request_id for r in good]

    # The same inputs through a bare ONNX Runtime session give the same numbers.
    session = ort.InferenceSession(str(MODEL_DIR / "1" / "model.onnx"))
    p, _ = session.run(
        None,
        {
            "image": np.stack([r.image.to_array() for r in good]),
            "clinical": np.asarray([r.clinical for r in good], np.float32),
            "clinical_mask": np.asarray([r.clinical_mask for r in good], np.float32),
        },
    )
    assert np.allclose([s.p_critical for s in scores], p[:, 0], atol=1e-5)
    # Falling SpO2 (97, 94, 91, 88, 85) must not lower the risk.
    assert all(b >= a - 1e-6 for a, b in zip(p[:, 0], p[1:, 0], strict=False))


async def test_the_score_id_is_stable_across_redelivery(
    backend: CountingBackend,
) -> None:
    body = request(1, 95).model_dump_json().encode()
    first = await Scorer(backend, MANIFEST).process([record(0, body)])
    again = await Scorer(backend, MANIFEST).process([record(0, body)])
    ids = [json.loads(o[0].value)["score_id"] for o in (*first, *again)]  # type: ignore[index]
    assert ids[0] == ids[1]


def test_a_model_with_other_inputs_is_refused() -> None:
    declared = {
        "image": ("FP32", [1, 224, 224]),
        "clinical": ("FP32", [11]),
        "clinical_mask": ("FP32", [12]),
    }
    with pytest.raises(ContractMismatch, match="'clinical' has shape \\[11\\]"):
        check_inputs(declared, MANIFEST)


def test_a_model_with_an_integer_image_is_refused() -> None:
    declared = {
        "image": ("UINT8", [1, 224, 224]),
        "clinical": ("FP32", [12]),
        "clinical_mask": ("FP32", [12]),
    }
    with pytest.raises(ContractMismatch, match="UINT8"):
        check_inputs(declared, MANIFEST)
