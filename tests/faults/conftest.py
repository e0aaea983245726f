"""Fixtures of the fault-injection suite, which cases run, and the final table.

The fault cases each start a whole pipeline and take a minute or two, so
they run only when asked for: ``make test-faults`` (``pytest tests/faults``),
or any pytest run with ``CXRWATCH_FAULT_CASES`` set. A plain ``make test``
skips them. ``CXRWATCH_FAULT_CASES`` is ``all`` or a comma-separated list of
case ids (``kill-imaging,redis-down``); ``CXRWATCH_FAULT_SEED`` (default 7)
seeds where the faults strike and where the poison goes.
"""

import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cxrwatch.core.manifest import load_manifest
from cxrwatch.scenario.load import LoadPlan, build_load, deteriorating_keys, stable_keys

from tests.faults.oracle import compute_expected, scenario_steps
from tests.faults.redis_server import PrivateRedis
from tests.faults.report import RESULTS, markdown_table, text_table
from tests.faults.run import Scenario
from tests.servers import REPO

logger = logging.getLogger(__name__)

OUTPUT = REPO / "test-output" / "faults"
HEAVY = "faults"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{HEAVY}: a fault case over the whole pipeline (minutes)"
    )


def fault_seed() -> int:
    """The seed of this run's fault moments and poison places."""
    return int(os.environ.get("CXRWATCH_FAULT_SEED", "7"))


def chosen_cases() -> set[str] | None:
    """Case ids to run; None means all of them."""
    wanted = os.environ.get("CXRWATCH_FAULT_CASES", "all").strip()
    if wanted in ("", "all"):
        return None
    return {name.strip() for name in wanted.split(",") if name.strip()}


def _asked_for(config: pytest.Config) -> bool:
    if "CXRWATCH_FAULT_CASES" in os.environ:
        return True
    here = Path(__file__).parent.resolve()
    for arg in config.invocation_params.args:
        path = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        if path == here or here in path.parents:
            return True
    return False


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    if _asked_for(config):
        return
    skip = pytest.mark.skip(reason="fault cases run with make test-faults")
    for item in items:
        if item.get_closest_marker(HEAVY):
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RESULTS:
        return
    terminalreporter.section("fault cases")
    terminalreporter.write_line(f"seed {fault_seed()}")
    terminalreporter.write_line(text_table(RESULTS))
    for result in RESULTS:
        for line in result.problems + result.notes:
            terminalreporter.write_line(f"{result.case}: {line}")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "table.md").write_text(markdown_table(RESULTS) + "\n")


@pytest.fixture(scope="session")
def private_redis() -> Iterator[PrivateRedis]:
    """A redis-server of the suite's own, with an append-only file."""
    server = PrivateRedis(OUTPUT / f"redis-{uuid.uuid4().hex[:6]}")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def scenario(private_redis: PrivateRedis) -> Scenario:
    """The load scenario, and the oracle's outputs for it."""
    plan = LoadPlan()
    index = build_load(OUTPUT / "scenario", plan)
    expected = compute_expected(
        index, private_redis.url, f"oracle-{uuid.uuid4().hex[:8]}", REPO / "models"
    )
    alerted = expected.alerted_patients()
    # The oracle against the scenario's design, worked out apart from the code:
    # every deteriorating patient is alerted, no stable one is.
    assert alerted == set(deteriorating_keys(plan)), alerted
    assert not alerted & set(stable_keys(plan))
    if expected.closest_to_threshold < 1e-4:
        logger.warning(
            "a score came within %.4f of a band edge: Triton and the oracle's "
            "ONNX Runtime could round it differently",
            expected.closest_to_threshold,
        )
    manifest = load_manifest(REPO / "models" / "cxr_fusion" / "features.json")
    return Scenario(
        index=index,
        steps=scenario_steps(index),
        expected=expected,
        poison_keys=deteriorating_keys(plan) + stable_keys(plan),
        features=manifest.names,
    )
