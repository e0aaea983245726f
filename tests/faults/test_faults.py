"""Fault injection over the whole pipeline: each case replays the load scenario
through a private stack with one fault, and must end with exactly the oracle's
outputs (see :mod:`tests.faults.run` for what is checked).

Waves: 0, 2, 4 carry clinical data (2 and 4 also re-score radiographs, so
every service works in them); 1 and 3 carry the radiographs.
"""

import pytest

from tests.faults.conftest import chosen_cases, fault_seed
from tests.faults.faults import (
    Kill,
    ModelUnloaded,
    RedisOutage,
    RollingRestart,
    TritonOutage,
)
from tests.faults.redis_server import PrivateRedis
from tests.faults.report import RESULTS
from tests.faults.run import Case, Scenario, run_case

OUTAGE_S = 10.0

CASES = {
    "no-fault": Case("no fault"),
    "kill-imaging": Case("kill -9 imaging", Kill("imaging", waves=(1, 3))),
    "kill-clinical": Case("kill -9 clinical", Kill("clinical", waves=(0, 2, 4))),
    "kill-joiner": Case("kill -9 joiner", Kill("joiner", waves=(1, 2, 3, 4))),
    "kill-scorer": Case("kill -9 scorer", Kill("scorer", waves=(2, 4))),
    "kill-alerter": Case("kill -9 alerter", Kill("alerter", waves=(2, 4))),
    "kill-api": Case("kill -9 api", Kill("api", waves=(2, 4))),
    "rolling-restart": Case("SIGTERM each service", RollingRestart(waves=(2, 4))),
    "redis-down": Case("Redis down 10 s", RedisOutage(OUTAGE_S, waves=(2, 4))),
    "triton-down": Case("Triton down 10 s", TritonOutage(OUTAGE_S, waves=(2, 4))),
    "model-unloaded": Case(
        "model unloaded 10 s", ModelUnloaded(OUTAGE_S, waves=(2, 4))
    ),
    "poison": Case("50 poison messages", poison=True),
}


def _selected() -> list[str]:
    wanted = chosen_cases()
    return [name for name in CASES if wanted is None or name in wanted]


@pytest.mark.faults
@pytest.mark.parametrize("case_id", _selected())
def test_fault_case(
    case_id: str, scenario: Scenario, private_redis: PrivateRedis
) -> None:
    case = CASES[case_id]

    result = run_case(case, scenario, private_redis, fault_seed())
    RESULTS.append(result)

    assert result.passed, result.problems
    if case.fault is not None and "SIGTERM" in case.name:
        # The batch in hand is committed before a service leaves: nothing is
        # redelivered, so no output repeats.
        assert result.redelivered == 0, result.redelivered


def test_case_ids_are_known() -> None:
    wanted = chosen_cases() or set()
    assert wanted <= set(CASES), sorted(wanted - set(CASES))
