"""Each poison message, handed to its service's processor in process, is refused
with the error the fault suite expects in its dead letter, and refusing it
leaves its neighbours in the same batch alone. No server is needed: every
refusal happens before Redis or the model is reached.
"""

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import pytest
from aiokafka import ConsumerRecord
from cxrwatch.alerter.service import AlerterSettings
from cxrwatch.alerter.service import build_processor as build_alerter
from cxrwatch.clinical.service import ClinicalProcessor, ClinicalSettings
from cxrwatch.core.events import InferenceRequest, News2, Tensor
from cxrwatch.core.kafka import Output
from cxrwatch.core.manifest import FeatureManifest, load_manifest
from cxrwatch.core.stream import Outcome
from cxrwatch.imaging.service import ImagingProcessor, ImagingSettings
from cxrwatch.joiner.service import JoinerSettings
from cxrwatch.joiner.service import build_processor as build_joiner
from cxrwatch.scorer.backends import OnnxRuntimeBackend
from cxrwatch.scorer.service import Scorer

from tests.faults.oracle import as_record
from tests.faults.poison import Poison, poison_messages
from tests.servers import REPO, free_port

MODELS = REPO / "models"
MODEL = MODELS / "cxr_fusion" / "1" / "model.onnx"

pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="no model.onnx built")


class Processor(Protocol):
    """The part of a service's processor these tests use."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def process(self, records: Sequence[ConsumerRecord]) -> list[Outcome]: ...


@pytest.fixture(scope="module")
def manifest() -> FeatureManifest:
    return load_manifest(MODELS / "cxr_fusion" / "features.json")


@pytest.fixture
async def processors(manifest: FeatureManifest) -> AsyncIterator[dict[str, Processor]]:
    # Nothing listens on this port: a processor that reached Redis would fail.
    common = {
        "redis_url": f"redis://127.0.0.1:{free_port()}/0",
        "model_repository": MODELS,
    }
    built: dict[str, Processor] = {
        "imaging": ImagingProcessor(ImagingSettings(**common, decode_workers=1)),  # type: ignore[arg-type]
        "clinical": ClinicalProcessor(ClinicalSettings(**common)),  # type: ignore[arg-type]
        "joiner": build_joiner(JoinerSettings(**common)),  # type: ignore[arg-type]
        "alerter": build_alerter(AlerterSettings(**common)),  # type: ignore[arg-type]
        "scorer": Scorer(
            OnnxRuntimeBackend(MODEL, "cxr_fusion", manifest, threads=1), manifest
        ),
    }
    for processor in built.values():
        await processor.start()
    yield built
    for processor in built.values():
        await processor.stop()


def _poisons(manifest: FeatureManifest) -> list[Poison]:
    return poison_messages(["LD-1001", "LD-1002"], manifest.names, copies=1)


def _request(manifest: FeatureManifest, request_id: str) -> Output:
    at = datetime(2026, 1, 6, 12, tzinfo=UTC)
    size = (manifest.image.channels, manifest.image.height, manifest.image.width)
    request = InferenceRequest(
        request_id=request_id,
        radiograph_id=request_id,
        patient_key="LD-1001",
        acquired_at=at,
        as_of=at,
        trigger="radiograph",
        image=Tensor.from_array(np.full(size, 0.5, dtype=np.float32)),
        features=manifest.names,
        clinical=[0.0] * len(manifest.names),
        clinical_mask=[0.0] * len(manifest.names),
        clinical_values={},
        news2=News2(),
    )
    return Output(
        topic="inference.requests.v1",
        key="LD-1001",
        value=request.model_dump_json().encode(),
        ce_type="org.cxrwatch.inference-request.v1",
        ce_id=request_id,
        ce_source="tests",
    )


async def test_every_kind_of_poison_is_refused_with_its_reason(
    processors: dict[str, Processor], manifest: FeatureManifest
) -> None:
    for poison in _poisons(manifest):
        [outcome] = await processors[poison.service].process(
            [as_record(poison.output(), 0)]
        )
        assert isinstance(outcome, Exception), poison.ce_id
        assert type(outcome).__name__ in poison.error_classes, (poison.ce_id, outcome)
        assert poison.reason.lower() in str(outcome).lower(), (poison.ce_id, outcome)


async def test_a_request_of_the_wrong_image_size_is_refused_beside_good_ones(
    processors: dict[str, Processor], manifest: FeatureManifest
) -> None:
    [wrong] = [p for p in _poisons(manifest) if "image-size" in p.ce_id]
    batch = [
        as_record(_request(manifest, "good-1"), 0),
        as_record(wrong.output(), 1),
        as_record(_request(manifest, "good-2"), 2),
    ]

    first, refused, last = await processors["scorer"].process(batch)

    assert isinstance(refused, Exception)
    assert "image" in str(refused).lower()
    assert isinstance(first, list) and isinstance(last, list)
    assert [o.topic for o in first + last] == ["risk.scores.v1"] * 2


async def test_a_lone_request_of_the_wrong_size_never_reaches_the_model(
    processors: dict[str, Processor], manifest: FeatureManifest
) -> None:
    [wrong] = [p for p in _poisons(manifest) if "image-size" in p.ce_id]

    [outcome] = await processors["scorer"].process([as_record(wrong.output(), 0)])

    assert type(outcome).__name__ == "InvalidInput"


def test_fifty_poison_messages_of_ten_kinds(manifest: FeatureManifest) -> None:
    made = poison_messages(["LD-1001"], manifest.names)
    assert len(made) == 50
    assert len({p.ce_id for p in made}) == 50
    assert len({p.ce_id.split("-", 2)[2] for p in made}) == 10
