"""The observation store against a real Redis: versions, windows, retention, receipts.

Redis comes from the shared fixtures (``tests/conftest.py``): 127.0.0.1:6379 unless
``CXRWATCH_TEST_REDIS_URL`` says otherwise, a key prefix per test, deleted after.
"""

import socket
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
import redis.asyncio
from cxrwatch.core.errors import DependencyUnavailable, InvalidInput
from cxrwatch.core.manifest import FeatureManifest
from cxrwatch.core.observations import (
    WITHDRAWN,
    ObservationStatus,
    ObservationStore,
    PatientWrite,
    StoredObservation,
    check_storable,
    with_demographics,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    ConnectionError,
    NoScriptError,
    TimeoutError,
)

T0 = datetime(2021, 3, 9, 12, 0, tzinfo=UTC)


def feature(name: str, unit: str, lookback: float, low: float, high: float) -> dict:
    return {
        "name": name,
        "unit": unit,
        "loinc": [f"{name}-code"],
        "mean": (low + high) / 2,
        "std": 1.0,
        "lookback_hours": lookback,
        "normal": (low + high) / 2,
        "valid_range": [low, high],
    }


MANIFEST = FeatureManifest.model_validate(
    {
        "model": "test",
        "image": {"height": 8, "width": 8},
        "features": [
            feature("age", "a", 876000, 0, 120),
            feature("sex", "1", 876000, 0, 1),
            feature("heart_rate", "/min", 24, 0, 300),
            feature("temperature", "Cel", 24, 25, 45),
            feature("crp", "mg/L", 72, 0, 1000),
        ],
    }
)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    connection = redis.asyncio.Redis.from_url(redis_url)
    yield connection
    await connection.aclose()


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix


@pytest.fixture
def store(client: redis.asyncio.Redis, prefix: str) -> ObservationStore:
    return ObservationStore(client, MANIFEST, prefix=prefix, retention_hours=168)


def reading(
    value: float | None,
    *,
    at: datetime = T0,
    source: str = "fhir:Observation/hr1",
    version: int = 2,
    status: ObservationStatus = "final",
    name: str = "heart_rate",
) -> StoredObservation:
    unit = MANIFEST.by_name[name].unit
    return StoredObservation(name, value, unit, at, source, version, status)


async def test_new_value_is_returned_and_snapshotted(store):
    changed = await store.put("p1", [reading(88)])
    assert [(o.feature, o.value) for o in changed] == [("heart_rate", 88.0)]
    snapshot = await store.snapshot("p1", T0 + timedelta(hours=1))
    assert snapshot.values["heart_rate"] == 88.0
    assert snapshot.observed_at["heart_rate"] == T0
    assert list(snapshot.values) == MANIFEST.names
    assert snapshot.missing == ["age", "sex", "temperature", "crp"]


async def test_duplicate_delivery_changes_nothing(store):
    await store.put("p1", [reading(88)])
    assert await store.put("p1", [reading(88)]) == []


async def test_newer_version_replaces_and_stale_redelivery_does_not(store):
    await store.put("p1", [reading(88, version=2)])
    amended = await store.put("p1", [reading(92, version=3, status="amended")])
    assert [o.value for o in amended] == [92.0]
    assert await store.put("p1", [reading(88, version=2)]) == []
    snapshot = await store.snapshot("p1", T0)
    assert snapshot.values["heart_rate"] == 92.0


async def test_same_version_with_other_content_replaces(store):
    await store.put("p1", [reading(88)])
    assert [o.value for o in await store.put("p1", [reading(89)])] == [89.0]


async def test_entered_in_error_withdraws_and_blocks_older_versions(store):
    await store.put("p1", [reading(70, at=T0 - timedelta(hours=2), source="other")])
    await store.put("p1", [reading(88)])
    [withdrawn] = await store.put(
        "p1", [reading(None, version=4, status="entered-in-error")]
    )
    assert (withdrawn.status, withdrawn.value, withdrawn.effective_at) == (
        "entered-in-error",
        88.0,
        T0,
    )
    snapshot = await store.snapshot("p1", T0)
    assert snapshot.values["heart_rate"] == 70.0  # the other source shows again
    assert await store.put("p1", [reading(88, version=2)]) == []
    assert (await store.snapshot("p1", T0)).values["heart_rate"] == 70.0


async def test_withdrawal_of_an_unseen_value_blocks_its_late_arrival(store):
    tombstone = reading(None, version=4, status="entered-in-error")
    assert await store.put("p1", [tombstone]) == []
    assert await store.put("p1", [reading(88, version=2)]) == []
    assert (await store.snapshot("p1", T0)).values["heart_rate"] is None


async def test_a_moved_feature_leaves_its_old_series(store):
    await store.put("p1", [reading(37.0, name="temperature", source="s")])
    await store.put("p1", [reading(80.0, name="heart_rate", source="s", version=3)])
    snapshot = await store.snapshot("p1", T0)
    assert (snapshot.values["temperature"], snapshot.values["heart_rate"]) == (
        None,
        80.0,
    )


async def test_look_back_window_bounds(store):
    await store.put(
        "p1",
        [
            reading(60, at=T0 - timedelta(hours=25), source="a"),
            reading(70, at=T0 - timedelta(hours=23), source="b"),
            reading(80, at=T0 + timedelta(minutes=1), source="c"),
        ],
    )
    snapshot = await store.snapshot("p1", T0)
    assert (
        snapshot.values["heart_rate"] == 70.0
    )  # 25 h is outside 24 h; +1 min is ahead
    exact = await store.snapshot("p1", T0 - timedelta(hours=23))
    assert exact.values["heart_rate"] == 70.0  # the window includes as_of itself


async def test_out_of_order_arrival_keeps_the_latest_by_event_time(store):
    await store.put("p1", [reading(80, at=T0, source="new")])
    await store.put("p1", [reading(60, at=T0 - timedelta(hours=3), source="old")])
    assert (await store.snapshot("p1", T0)).values["heart_rate"] == 80.0
    earlier = await store.snapshot("p1", T0 - timedelta(hours=1))
    assert earlier.values["heart_rate"] == 60.0


async def test_retention_trims_and_refuses_what_is_older(store, client, prefix, caplog):
    await store.put("p1", [reading(1, at=T0, source="old", name="crp")])
    later = T0 + timedelta(hours=200)
    await store.put("p1", [reading(2, at=later, source="new", name="crp")])
    source_hash = f"{prefix}:obs:{{p1}}:src"
    assert await client.hkeys(source_hash) == [b"new"]
    assert await client.zrange(f"{prefix}:obs:{{p1}}:series", 0, -1) == [b"new"]
    too_late = reading(3, at=T0 + timedelta(hours=10), source="late", name="crp")
    with caplog.at_level("INFO", logger="cxrwatch.core.observations"):
        assert await store.put("p1", [too_late]) == []
    assert await client.hkeys(source_hash) == [b"new"]
    assert "refused 1 values of pt-" in caplog.text


async def test_every_key_expires_with_the_retention(store, client, prefix):
    await store.put("p1", [reading(88)])
    await store.put_demographics("p1", birth_date=date(1950, 1, 1), sex="F")
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
    assert {key.decode().split(":", 2)[2] for key in keys} == {
        "{p1}:src",
        "{p1}:idx",
        "{p1}:series",
        "{p1}",
    }
    for key in keys:
        assert 0 < await client.ttl(key) <= 168 * 3600


async def test_demographics_give_age_and_sex(store):
    await store.put_demographics("p1", birth_date=date(1960, 3, 9), sex="M")
    snapshot = await store.snapshot("p1", T0)
    assert snapshot.values["age"] == pytest.approx(61.0, abs=0.01)
    assert snapshot.values["sex"] == 1.0
    await store.put_demographics("p1", birth_date=None, sex="F")
    snapshot = await store.snapshot("p1", T0)
    assert snapshot.values["sex"] == 0.0
    assert snapshot.values["age"] == pytest.approx(61.0, abs=0.01)  # kept
    await store.put_demographics("p1", birth_date=None, sex="O")
    assert (await store.snapshot("p1", T0)).values["sex"] is None


async def test_the_image_header_fills_only_what_the_ehr_left_out(store):
    # Born 1960-03-09, as of 2021-03-09 12:00: 61 years and half a day.
    unknown = await store.snapshot("p1", T0)
    filled = with_demographics(unknown, date(1960, 3, 9), "F")
    assert filled.values["age"] == pytest.approx(61.0, abs=0.01)
    assert filled.values["sex"] == 0.0
    assert filled.observed_at["age"] == T0

    await store.put_demographics("p1", birth_date=date(1970, 3, 9), sex="M")
    known = with_demographics(await store.snapshot("p1", T0), date(1960, 3, 9), "F")
    assert known.values["age"] == pytest.approx(51.0, abs=0.01)  # the EHR's
    assert known.values["sex"] == 1.0

    unborn = with_demographics(unknown, date(2030, 1, 1), "O")
    assert unborn.values["age"] is None
    assert unborn.values["sex"] is None


async def test_age_falls_back_to_a_stated_age(store):
    stated = reading(40.0, at=T0 - timedelta(days=365.2425), source="age", name="age")
    await store.put("p1", [stated])
    assert (await store.snapshot("p1", T0)).values["age"] == pytest.approx(41.0)


async def test_latest_effective_time_in_a_window_counts_withdrawals(store):
    await store.put("p1", [reading(80, at=T0, source="a")])
    await store.put("p1", [reading(81, at=T0 + timedelta(hours=2), source="b")])
    await store.put("p1", [reading(None, source="b", version=4, status=WITHDRAWN)])
    window = (T0 - timedelta(hours=1), T0 + timedelta(hours=3))
    assert await store.latest_effective("p1", *window) == T0 + timedelta(hours=2)
    assert await store.latest_effective("p1", T0, T0 + timedelta(hours=1)) is None
    assert await store.latest_effective("p9", *window) is None


async def test_patients_are_kept_apart(store):
    await store.put("p1", [reading(88)])
    assert (await store.snapshot("p2", T0)).values["heart_rate"] is None


async def test_batch_write_keeps_order_per_patient(store):
    writes = [
        PatientWrite("p1", [reading(88, version=2)]),
        PatientWrite("p2", [reading(60)], birth_date=date(1990, 1, 1)),
        PatientWrite("p1", [reading(90, version=3, status="amended")]),
    ]
    changes = await store.write(writes)
    assert [[o.value for o in c] for c in changes] == [[88.0], [60.0], [90.0]]


async def test_receipt_replays_the_first_delivery_until_released(store):
    first = await store.write([PatientWrite("p1", [reading(88)], receipt="u1")])
    again = await store.write([PatientWrite("p1", [reading(88)], receipt="u1")])
    assert again == first
    await store.release([("p1", "u1")])
    assert await store.write([PatientWrite("p1", [reading(88)], receipt="u1")]) == [[]]


async def test_naive_times_and_unknown_features_are_refused(store):
    with pytest.raises(ValueError, match="carries no offset"):
        reading(1, at=datetime(2021, 1, 1))
    with pytest.raises(ValueError, match="not in the manifest"):
        await store.put("p1", [StoredObservation("spo2", 95.0, "%", T0, "x")])
    with pytest.raises(ValueError, match="carries no offset"):
        await store.snapshot("p1", datetime(2021, 1, 1))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_redis_down_is_a_dependency_failure():
    down = redis.asyncio.Redis(
        host="127.0.0.1", port=closed_port(), retry=Retry(NoBackoff(), 0)
    )
    store = ObservationStore(down, MANIFEST)
    with pytest.raises(DependencyUnavailable) as put_failure:
        await store.put("p1", [reading(88)])
    assert isinstance(put_failure.value.__cause__, ConnectionError)
    with pytest.raises(DependencyUnavailable):
        await store.snapshot("p1", T0)
    with pytest.raises(DependencyUnavailable):
        await store.put_demographics("p1", birth_date=None, sex="M")
    await down.aclose()


class _FailingPipeline:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.scripts: set = set()

    def execute_command(self, *args):
        return self

    async def execute(self):
        raise self.error


@pytest.mark.parametrize(
    "error", [ConnectionError("x"), TimeoutError("x"), BusyLoadingError("x")]
)
async def test_every_redis_failure_maps_to_dependency_unavailable(client, error):
    store = ObservationStore(client, MANIFEST)
    client_pipeline = client.pipeline

    def failing(transaction: bool = True):
        return _FailingPipeline(error)

    client.pipeline = failing
    try:
        with pytest.raises(DependencyUnavailable):
            await store.put("p1", [reading(88)])
    finally:
        client.pipeline = client_pipeline


async def test_scripts_lost_by_redis_are_loaded_again(store, monkeypatch):
    send, calls = store._send, []

    async def forgetful(commands):
        calls.append(len(commands))
        if len(calls) == 1:
            raise NoScriptError("NOSCRIPT No matching script.")
        return await send(commands)

    monkeypatch.setattr(store, "_send", forgetful)
    assert [o.value for o in await store.put("p1", [reading(88)])] == [88.0]
    assert calls == [1, 1]


@pytest.mark.parametrize(
    "moment",
    [
        datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(2286, 11, 20, 17, 46, 40, tzinfo=UTC),
        datetime(2999, 1, 1, tzinfo=UTC),
    ],
    ids=["before-1970", "end-of-span", "2999"],
)
def test_a_time_outside_the_stores_span_is_refused(moment: datetime) -> None:
    with pytest.raises(InvalidInput, match="outside the times cxrwatch stores"):
        check_storable(moment, "OBX-14")


def test_the_first_and_last_storable_times_are_taken() -> None:
    check_storable(datetime(1970, 1, 1, tzinfo=UTC), "OBX-14")
    # 10**13 ms after 1970, less one millisecond: the last key the series holds.
    check_storable(datetime(2286, 11, 20, 17, 46, 39, 999000, tzinfo=UTC), "OBX-14")
