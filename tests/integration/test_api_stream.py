"""The live alert stream (Server-Sent Events) against a real uvicorn and Redis.

The stream is read over a real socket because only a real server shows what
a disconnect does. Expected events are the alerts each test recorded, in the
order it recorded them.
"""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest
import redis.asyncio as aioredis
from cxrwatch.api.principals import Principal
from cxrwatch.api.settings import Role
from cxrwatch.api.streamtokens import StreamTokens
from cxrwatch.core.alertstore import AlertStore
from test_api_world import (
    REDIS_URL,
    T0,
    Issuer,
    delete_prefix,
    headers,
    make_alert,
    new_prefix,
    serving,
    settings_for,
    store_on,
)

pytestmark = pytest.mark.integration

SECRET = "k3Jx9VqPz7LwT2mRb8NcYd4HsG6FaE1u"


@dataclass
class Event:
    event: str = "message"
    id: str | None = None
    data: list[str] = field(default_factory=list)


async def events(response: httpx.Response) -> AsyncIterator[Event]:
    """Parse an SSE body into events; comments and retry lines are skipped."""
    current = Event()
    async for line in response.aiter_lines():
        if line == "":
            if current.data or current.event != "message":
                yield current
            current = Event()
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            current.event = value
        elif name == "id":
            current.id = value
        elif name == "data":
            current.data.append(value)


async def take(response: httpx.Response, count: int) -> list[Event]:
    """The next ``count`` events, within 10 seconds."""
    taken: list[Event] = []

    async def collect() -> None:
        async for event in events(response):
            taken.append(event)
            if len(taken) == count:
                return

    await asyncio.wait_for(collect(), timeout=10)
    return taken


def alert_id(event: Event) -> str:
    assert event.event == "alert"
    return event.data[0].split('"alert_id":"', 1)[1].split('"', 1)[0]


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    value = new_prefix()
    yield value
    await delete_prefix(value)


@pytest.fixture
async def store(prefix: str) -> AsyncIterator[AlertStore]:
    async with store_on(prefix) as alert_store:
        yield alert_store


async def record_hourly(
    store: AlertStore, patient: str, count: int, start: int
) -> list[str]:
    alerts = [
        make_alert(patient, T0 + timedelta(hours=start + h)) for h in range(count)
    ]
    for alert in alerts:
        assert await store.record_alert(alert)
    return [alert.alert_id for alert in alerts]


async def streams_open(http: httpx.AsyncClient) -> float:
    metrics = (await http.get("/metrics", headers=headers("viewer"))).text
    for line in metrics.splitlines():
        if line.startswith("cxrwatch_api_streams "):
            return float(line.split()[1])
    raise AssertionError("cxrwatch_api_streams not exported")


async def test_reconnect_with_last_event_id_has_no_gap_and_no_duplicate(
    prefix: str, store: AlertStore
) -> None:
    settings = settings_for(prefix, api_stream_heartbeat_s=1)
    async with serving(settings) as url, httpx.AsyncClient(base_url=url) as http:
        listing = (await http.get("/alerts", headers=headers("viewer"))).json()
        resume = {**headers("viewer"), "Last-Event-ID": listing["feed_id"]}
        async with http.stream("GET", "/alerts/stream", headers=resume) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            before = await record_hourly(store, "MRN-S1", 3, 0)
            seen = await take(response, 2)
        # Disconnected: these are raised while the client is away.
        during = await record_hourly(store, "MRN-S2", 3, 10)
        resume["Last-Event-ID"] = seen[-1].id or ""
        async with http.stream("GET", "/alerts/stream", headers=resume) as response:
            seen += await take(response, 4)

    assert [alert_id(e) for e in seen] == before + during
    assert len({e.id for e in seen}) == 6


async def test_without_last_event_id_only_new_alerts_come(
    prefix: str, store: AlertStore
) -> None:
    old = await record_hourly(store, "MRN-S3", 2, 0)
    settings = settings_for(prefix, api_stream_heartbeat_s=1)
    async with (
        serving(settings) as url,
        httpx.AsyncClient(base_url=url) as http,
        http.stream("GET", "/alerts/stream", headers=headers("viewer")) as response,
    ):
        await asyncio.sleep(0.3)
        new = await record_hourly(store, "MRN-S3", 1, 5)
        seen = await take(response, 1)

    assert [alert_id(e) for e in seen] == new
    assert new[0] not in old


async def test_disconnect_stops_the_stream_before_its_heartbeat(
    prefix: str,
) -> None:
    settings = settings_for(prefix, api_stream_heartbeat_s=30)
    async with serving(settings) as url, httpx.AsyncClient(base_url=url) as http:
        async with http.stream(
            "GET", "/alerts/stream", headers=headers("viewer")
        ) as response:
            lines = response.aiter_lines()
            await anext(lines)
            open_while_reading = await streams_open(http)
        deadline = time.monotonic() + 3
        while await streams_open(http) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        open_after = await streams_open(http)

    assert (open_while_reading, open_after) == (1.0, 0.0)


async def test_stream_token_opens_the_stream_and_nothing_else(
    prefix: str, store: AlertStore
) -> None:
    settings = settings_for(prefix, api_stream_heartbeat_s=1)
    async with serving(settings) as url, httpx.AsyncClient(base_url=url) as http:
        grant = await http.post("/auth/stream-token", headers=headers("viewer"))
        token = grant.json()["token"]
        elsewhere = await http.get("/alerts", params={"token": token})
        tampered = await http.get("/alerts/stream", params={"token": token[:-2] + "xx"})
        async with http.stream(
            "GET", "/alerts/stream", params={"token": token, "last_event_id": "0-0"}
        ) as response:
            status = response.status_code
            recorded = await record_hourly(store, "MRN-S4", 1, 0)
            seen = await take(response, 1)

    assert grant.status_code == 200
    assert (elsewhere.status_code, tampered.status_code, status) == (401, 401, 200)
    assert [alert_id(e) for e in seen] == recorded


async def test_stream_ends_when_its_token_expires(prefix: str) -> None:
    settings = settings_for(prefix, api_stream_heartbeat_s=1, api_token_secret=SECRET)
    ttl = settings.api_stream_token_ttl_s
    # A clock set back so that the token has 1.5 to 2.5 s to live.
    soon = StreamTokens(SECRET.encode(), ttl, clock=lambda: time.time() - ttl + 2.5)
    token, _ = soon.issue(Principal("viewer-bot", Role.VIEWER, "api-key"))
    expired = StreamTokens(SECRET.encode(), ttl, clock=lambda: time.time() - ttl - 1)
    stale, _ = expired.issue(Principal("viewer-bot", Role.VIEWER, "api-key"))
    async with serving(settings) as url, httpx.AsyncClient(base_url=url) as http:
        refused = await http.get("/alerts/stream", params={"token": stale})
        started = time.monotonic()
        async with http.stream(
            "GET", "/alerts/stream", params={"token": token}
        ) as response:
            await asyncio.wait_for(response.aread(), timeout=10)
        lasted = time.monotonic() - started

    assert refused.status_code == 401
    assert "expired" in refused.json()["detail"]
    assert 1.2 < lasted < 5.0


async def test_trimmed_feed_sends_reset_first(prefix: str, store: AlertStore) -> None:
    await record_hourly(store, "MRN-S5", 3, 0)
    redis = aioredis.from_url(REDIS_URL)
    entries = await redis.xrange(store.feed_key)
    await redis.xtrim(store.feed_key, maxlen=1, approximate=False)
    await redis.aclose()
    first_id = entries[0][0].decode()
    settings = settings_for(prefix, api_stream_heartbeat_s=1)
    async with serving(settings) as url, httpx.AsyncClient(base_url=url) as http:
        resume = {**headers("viewer"), "Last-Event-ID": first_id}
        async with http.stream("GET", "/alerts/stream", headers=resume) as response:
            seen = await take(response, 2)

    assert seen[0].event == "reset"
    assert seen[1].id == entries[2][0].decode()


async def test_bad_last_event_id_and_too_many_streams(prefix: str) -> None:
    settings = settings_for(prefix, api_stream_heartbeat_s=1, api_stream_max_clients=1)
    async with serving(settings) as url, httpx.AsyncClient(base_url=url) as http:
        bad = await http.get(
            "/alerts/stream",
            headers={**headers("viewer"), "Last-Event-ID": "yesterday"},
        )
        async with http.stream(
            "GET", "/alerts/stream", headers=headers("viewer")
        ) as response:
            # Keep the line iterator: dropping it would close the connection.
            lines = response.aiter_lines()
            await anext(lines)
            async with http.stream(
                "GET", "/alerts/stream", headers=headers("viewer")
            ) as second:
                second_status = second.status_code
        anonymous = await http.get("/alerts/stream")

    assert bad.status_code == 422
    assert second_status == 503
    assert anonymous.status_code == 401


@pytest.mark.parametrize("role", ["viewer", "responder", "admin", "oidc-viewer"])
async def test_every_role_may_open_the_stream(prefix: str, role: str) -> None:
    with Issuer() as issuer:
        settings = settings_for(prefix, api_stream_heartbeat_s=1, **issuer.settings())
        if role.startswith("oidc-"):
            token = issuer.token(roles=[role.removeprefix("oidc-")])
            credentials = {"Authorization": f"Bearer {token}"}
        else:
            credentials = headers(role)
        async with (
            serving(settings) as url,
            httpx.AsyncClient(base_url=url) as http,
            http.stream("GET", "/alerts/stream", headers=credentials) as response,
        ):
            first_line = await anext(response.aiter_lines())

    assert response.status_code == 200
    assert first_line == "retry: 3000"
