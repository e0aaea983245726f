"""The scorer's micro-batches, their concurrency and the shadow model."""

import asyncio
from typing import Any

import numpy as np
import pytest
from aiokafka.structs import ConsumerRecord
from cxrwatch.core import topics
from cxrwatch.core.errors import DependencyUnavailable, InvalidInput
from cxrwatch.core.events import RiskScore
from cxrwatch.core.stream import Batching, Stalled
from cxrwatch.scorer.backends import Batch, OnnxRuntimeBackend, Prediction
from cxrwatch.scorer.service import Scorer, ScorerSettings, build_processor

from tests.unit.scorer.test_scorer import MANIFEST, MODEL_DIR, record, request

ONNX = MODEL_DIR / "1" / "model.onnx"


class StandInBackend:
    """Answers p = the request's first clinical value, after a set delay."""

    def __init__(self, name: str = "stand-in", max_batch_size: int = 2) -> None:
        self.model_name = name
        self.max_batch_size = max_batch_size
        self.delays: list[float] = []
        self.failures: dict[int, Exception] = {}
        self.calls = 0
        self.start_failure: Exception | None = None

    async def start(self) -> None:
        if self.start_failure is not None:
            raise self.start_failure

    async def ready(self) -> bool:
        return True

    async def infer(self, batch: Batch) -> Prediction:
        call = self.calls
        self.calls += 1
        await asyncio.sleep(self.delays[call] if call < len(self.delays) else 0)
        if call in self.failures:
            raise self.failures[call]
        p = 1 / (1 + np.exp(-batch.clinical[:, :1]))
        return Prediction(p, np.zeros_like(p), "7")

    async def close(self) -> None:
        pass


def scorer_over(backend: Any, **options: Any) -> Scorer:
    """A scorer over a stand-in backend (typed loosely: it is not the protocol)."""
    return Scorer(backend, MANIFEST, **options)


def scores(outcomes: list[Any]) -> list[RiskScore]:
    return [
        RiskScore.model_validate_json(output.value)
        for outcome in outcomes
        if isinstance(outcome, list)
        for output in outcome
    ]


def records(n: int) -> list[ConsumerRecord]:
    return [
        record(i, request(i, spo2=99 - i).model_dump_json().encode()) for i in range(n)
    ]


async def test_batches_finishing_out_of_order_still_emit_in_input_order() -> None:
    backend = StandInBackend(max_batch_size=2)
    backend.delays = [0.06, 0.03, 0.0]  # the last batch finishes first
    scorer = scorer_over(backend, max_inflight=3)

    outcomes = await scorer.process(records(5))

    assert backend.calls == 3
    assert [s.request_id for s in scores(outcomes)] == [f"req-{i}" for i in range(5)]


async def test_a_stall_commits_only_the_batches_before_it() -> None:
    backend = StandInBackend(max_batch_size=2)
    backend.failures = {1: DependencyUnavailable("Triton went away")}
    scorer = scorer_over(backend, max_inflight=3)

    with pytest.raises(Stalled) as stalled:
        await scorer.process(records(6))

    # Batch 0 finished; batch 1 failed; batch 2 may have finished too, but
    # nothing after the failure may be committed.
    finished = stalled.value.finished
    assert [s.request_id for s in scores(finished)] == ["req-0", "req-1"]


async def test_the_micro_batch_size_setting_stays_within_the_model() -> None:
    backend = StandInBackend(max_batch_size=4)
    assert scorer_over(backend, micro_batch_size=3).batch_size == 3
    assert scorer_over(backend, micro_batch_size=64).batch_size == 4
    assert scorer_over(backend).batch_size == 4


async def test_the_shadow_scores_the_same_requests_without_alerting() -> None:
    primary = OnnxRuntimeBackend(ONNX, "cxr_fusion", MANIFEST, 1, max_batch_size=4)
    shadow = OnnxRuntimeBackend(ONNX, "cxr_candidate", MANIFEST, 1, max_batch_size=4)
    scorer = Scorer(primary, MANIFEST, shadow=shadow)
    await scorer.start()

    outcomes = await scorer.process(records(3))

    for outcome in outcomes:
        assert isinstance(outcome, list)
        assert [o.topic for o in outcome] == [topics.RISK_SCORES] * 2
    made = scores(outcomes)
    main, candidate = made[0::2], made[1::2]
    assert [s.shadow for s in main] == [False] * 3
    assert [s.shadow for s in candidate] == [True] * 3
    assert [s.model_name for s in candidate] == ["cxr_candidate"] * 3
    assert [s.request_id for s in candidate] == [s.request_id for s in main]
    assert not {s.score_id for s in main} & {s.score_id for s in candidate}
    # The same ONNX file behind both: the same numbers.
    assert [s.p_critical for s in candidate] == pytest.approx(
        [s.p_critical for s in main], abs=1e-6
    )
    # Both keyed by patient, so a patient's shadow score follows its own.
    first = outcomes[0]
    assert isinstance(first, list)
    assert [o.key for o in first] == ["CXR-0", "CXR-0"]


@pytest.mark.parametrize(
    "failure", [DependencyUnavailable("shadow down"), InvalidInput("refused")]
)
async def test_a_failing_shadow_costs_only_its_own_scores(failure: Exception) -> None:
    primary = StandInBackend("cxr_fusion")
    shadow = StandInBackend("cxr_candidate")
    shadow.failures = {0: failure}
    scorer = scorer_over(primary, shadow=shadow)
    await scorer.start()

    outcomes = await scorer.process(records(4))

    made = scores(outcomes)
    assert [(s.request_id, s.shadow) for s in made] == [
        ("req-0", False),
        ("req-1", False),
        ("req-2", False),
        ("req-2", True),
        ("req-3", False),
        ("req-3", True),
    ]


async def test_a_shadow_that_cannot_start_does_not_hold_up_the_scorer() -> None:
    primary = StandInBackend("cxr_fusion")
    shadow = StandInBackend("cxr_candidate")
    shadow.start_failure = DependencyUnavailable("not loaded")
    scorer = scorer_over(primary, shadow=shadow)
    await scorer.start()

    outcomes = await scorer.process(records(2))

    assert [s.shadow for s in scores(outcomes)] == [False, False]
    assert shadow.calls == 0


def test_the_settings_name_the_shadow() -> None:
    settings = ScorerSettings(
        backend="onnxruntime",
        model_repository=MODEL_DIR.parent,
        shadow_model_name="cxr_fusion",
        shadow_model_version="1",
    )
    scorer = build_processor(settings)
    assert scorer._shadow is not None
    assert scorer._shadow.model_name == "cxr_fusion"


def test_the_scorer_asks_the_runtime_for_its_micro_batch() -> None:
    scorer = scorer_over(StandInBackend(max_batch_size=8), micro_batch_size=4)

    assert isinstance(scorer, Batching)
    assert scorer.batch_size == 4
