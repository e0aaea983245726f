"""The API's REST endpoints against the real Redis.

Alerts and scores are written with the alerter's ``AlertStore`` methods, then
read back through HTTP. Expected pages, orders and filters are worked out
here from what each test wrote, not from what the API returned.
"""

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cxrwatch.core.alertstore import AlertStore
from cxrwatch.core.events import Alert
from test_api_world import (
    NAMES,
    T0,
    api_client,
    delete_prefix,
    headers,
    make_alert,
    make_score,
    new_prefix,
    settings_for,
    store_on,
)

pytestmark = pytest.mark.integration

PATIENT_A = "MRN-000417@st-elsewhere"
PATIENT_B = "MRN-009112@st-elsewhere"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    value = new_prefix()
    yield value
    await delete_prefix(value)


@pytest.fixture
async def store(prefix: str) -> AsyncIterator[AlertStore]:
    async with store_on(prefix) as alert_store:
        yield alert_store


@pytest.fixture
async def client(prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings_for(prefix)) as api:
        yield api


async def record(store: AlertStore, *alerts: Alert) -> None:
    for alert in alerts:
        assert await store.record_alert(alert)


def ids(page: dict[str, Any]) -> list[str]:
    return [item["alert_id"] for item in page["items"]]


async def all_pages(
    client: httpx.AsyncClient, params: dict[str, object]
) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/alerts", params=query, headers=headers("viewer"))
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(ids(body))
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 20, "pagination does not end"


async def test_five_alerts_in_pages_of_two(
    store: AlertStore, client: httpx.AsyncClient
) -> None:
    alerts = [make_alert(PATIENT_A, T0 + timedelta(hours=h)) for h in range(5)]
    await record(store, *alerts)
    newest_first = [a.alert_id for a in reversed(alerts)]

    pages = await all_pages(client, {"limit": 2})

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [alert_id for page in pages for alert_id in page] == newest_first


async def test_alerts_raised_at_the_same_time_page_without_loss(
    store: AlertStore, client: httpx.AsyncClient
) -> None:
    same_time = [make_alert(f"MRN-T{i:03d}", T0) for i in range(4)]
    earlier = make_alert(PATIENT_A, T0 - timedelta(minutes=1))
    await record(store, *same_time, earlier)
    tied = sorted((a.alert_id for a in same_time), reverse=True)

    pages = await all_pages(client, {"limit": 1})

    assert pages == [[alert_id] for alert_id in [*tied, earlier.alert_id]]


async def test_an_alert_recorded_between_pages_does_not_shift_them(
    store: AlertStore, client: httpx.AsyncClient
) -> None:
    alerts = [make_alert(PATIENT_A, T0 + timedelta(hours=h)) for h in range(3)]
    await record(store, *alerts)
    first = (await client.get("/alerts?limit=2", headers=headers("viewer"))).json()
    await record(store, make_alert(PATIENT_B, T0 + timedelta(hours=9)))

    second = await client.get(
        "/alerts",
        params={"limit": 2, "cursor": first["next_cursor"]},
        headers=headers("viewer"),
    )

    assert ids(first) == [alerts[2].alert_id, alerts[1].alert_id]
    assert ids(second.json()) == [alerts[0].alert_id]


async def test_filters_by_patient_band_and_time(
    store: AlertStore, client: httpx.AsyncClient
) -> None:
    a_high = make_alert(PATIENT_A, T0, band="high")
    a_critical = make_alert(
        PATIENT_A, T0 + timedelta(hours=2), band="critical", p_critical=0.91
    )
    b_high = make_alert(PATIENT_B, T0 + timedelta(hours=1), band="high")
    b_critical = make_alert(
        PATIENT_B, T0 + timedelta(hours=3), band="critical", p_critical=0.88
    )
    await record(store, a_high, a_critical, b_high, b_critical)
    viewer = headers("viewer")

    by_patient = await client.get(f"/alerts?patient={PATIENT_B}", headers=viewer)
    by_band = await client.get("/alerts?band=critical", headers=viewer)
    two_bands = await client.get("/alerts?band=critical&band=high", headers=viewer)
    window = await client.get(
        "/alerts",
        params={
            "since": (T0 + timedelta(hours=1)).isoformat(),
            "until": (T0 + timedelta(hours=2)).isoformat(),
        },
        headers=viewer,
    )
    combined = await client.get(
        "/alerts",
        params={"patient": PATIENT_A, "band": "high", "until": T0.isoformat()},
        headers=viewer,
    )

    assert ids(by_patient.json()) == [b_critical.alert_id, b_high.alert_id]
    assert ids(by_band.json()) == [b_critical.alert_id, a_critical.alert_id]
    assert len(ids(two_bands.json())) == 4
    assert ids(window.json()) == [a_critical.alert_id, b_high.alert_id]
    assert ids(combined.json()) == [a_high.alert_id]


async def test_status_filter_pages_over_filtered_out_alerts(
    store: AlertStore, client: httpx.AsyncClient
) -> None:
    alerts = [make_alert(PATIENT_A, T0 + timedelta(hours=h)) for h in range(6)]
    await record(store, *alerts)
    for alert in alerts[::2]:
        response = await client.post(
            f"/alerts/{alert.alert_id}/acknowledge", headers=headers("responder")
        )
        assert response.status_code == 200
    acknowledged = [a.alert_id for a in reversed(alerts[::2])]
    still_open = [a.alert_id for a in reversed(alerts[1::2])]

    ack_pages = await all_pages(client, {"status": "acknowledged", "limit": 2})
    open_pages = await all_pages(client, {"status": "open", "limit": 2})

    assert ack_pages == [acknowledged[:2], acknowledged[2:]]
    assert open_pages == [still_open[:2], still_open[2:]]


async def test_one_alert_shows_what_changed(
    store: AlertStore, client: httpx.AsyncClient
) -> None:
    alert = make_alert(PATIENT_A, T0, p_critical=0.72, previous_p_critical=0.41)
    await record(store, alert)

    response = await client.get(f"/alerts/{alert.alert_id}", headers=headers("viewer"))

    body = response.json()
    assert response.status_code == 200
    assert body["p_critical"] == 0.72
    assert body["previous_p_critical"] == 0.41
    assert (body["previous_band"], body["band"]) == ("moderate", "high")
    assert body["changes"][0] == {
        "feature": "spo2",
        "previous": 95.0,
        "current": 88.0,
        "unit": "%",
    }
    assert body["news2"]["score"] == 7
    assert body["status"] == "open"
    assert body["acknowledged"] is None


async def test_unknown_alert_is_404(client: httpx.AsyncClient) -> None:
    viewer, responder = headers("viewer"), headers("responder")

    read = await client.get("/alerts/no-such-alert", headers=viewer)
    ack = await client.post("/alerts/no-such-alert/acknowledge", headers=responder)

    assert (read.status_code, ack.status_code) == (404, 404)


async def test_acknowledge_records_who_when_and_note(
    store: AlertStore, client: httpx.AsyncClient
) -> None:
    alert = make_alert(PATIENT_A, T0)
    await record(store, alert)
    url = f"/alerts/{alert.alert_id}/acknowledge"

    first = await client.post(
        url, json={"note": "RRT on the way"}, headers=headers("responder")
    )
    again = await client.post(url, headers=headers("responder"))
    read = await client.get(f"/alerts/{alert.alert_id}", headers=headers("viewer"))

    assert first.status_code == 200
    assert first.json()["status"] == "acknowledged"
    assert first.json()["acknowledged"]["by"] == NAMES["responder"]
    assert first.json()["acknowledged"]["note"] == "RRT on the way"
    assert again.status_code == 409
    assert read.json()["acknowledged"] == first.json()["acknowledged"]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"band": "purple"}, "unknown band"),
        ({"status": "closed"}, "unknown status"),
        ({"since": "2026-03-14T08:00:00"}, "time without offset"),
        ({"since": "yesterday"}, "not a time"),
        ({"since": "2026-03-15T00:00:00Z", "until": "2026-03-14T00:00:00Z"}, "order"),
        ({"limit": 0}, "limit too small"),
        ({"limit": 201}, "limit too large"),
        ({"cursor": "not-a-cursor"}, "bad cursor"),
        ({"cursor": "WyJ4Il0"}, "cursor of the wrong shape"),
    ],
)
async def test_bad_filter_is_422(
    client: httpx.AsyncClient, params: dict[str, object], reason: str
) -> None:
    response = await client.get("/alerts", params=params, headers=headers("viewer"))

    assert response.status_code == 422, reason


async def test_risk_history_in_time_order_and_range(
    store: AlertStore, client: httpx.AsyncClient
) -> None:
    probabilities = [0.22, 0.35, 0.58, 0.74]
    scores = [
        make_score(PATIENT_A, T0 + timedelta(hours=6 * i), p)
        for i, p in enumerate(probabilities)
    ]
    for score in reversed(scores):
        await store.record_score(score)
    url = f"/patients/{PATIENT_A}/risk"

    whole = await client.get(url, headers=headers("viewer"))
    middle = await client.get(
        url,
        params={
            "since": (T0 + timedelta(hours=6)).isoformat(),
            "until": (T0 + timedelta(hours=12)).isoformat(),
        },
        headers=headers("viewer"),
    )

    assert whole.status_code == 200
    points = whole.json()["points"]
    assert [p["p_critical"] for p in points] == probabilities
    assert points[0]["clinical_values"]["crp"] == 142.0
    assert points[0]["news2"]["score"] == 7
    assert whole.json()["band_thresholds"] == [0.3, 0.6, 0.85]
    assert [p["p_critical"] for p in middle.json()["points"]] == [0.35, 0.58]


async def test_risk_of_unknown_patient_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/patients/MRN-nobody/risk", headers=headers("viewer"))

    assert response.status_code == 404


async def test_patient_key_with_a_slash(
    store: AlertStore, client: httpx.AsyncClient
) -> None:
    await store.record_score(make_score("ward-7/bed-3", T0, 0.4))

    response = await client.get(
        "/patients/ward-7%2Fbed-3/risk", headers=headers("viewer")
    )

    assert response.status_code == 200
    assert response.json()["patient_key"] == "ward-7/bed-3"


async def test_latest_score_per_patient(
    store: AlertStore, client: httpx.AsyncClient
) -> None:
    later_a = make_score(PATIENT_A, T0 + timedelta(hours=4), 0.81)
    earlier_a = make_score(PATIENT_A, T0, 0.3)
    only_b = make_score(PATIENT_B, T0 + timedelta(hours=1), 0.12)
    for score in (later_a, earlier_a, only_b):
        await store.record_score(score)

    response = await client.get("/patients/latest", headers=headers("viewer"))

    items = response.json()["items"]
    assert [(i["patient_key"], i["p_critical"]) for i in items] == [
        (PATIENT_A, 0.81),
        (PATIENT_B, 0.12),
    ]
    assert items[0]["score_id"] == later_a.score_id


async def test_health_readiness_and_metrics(client: httpx.AsyncClient) -> None:
    live = await client.get("/healthz")
    ready = await client.get("/readyz", headers=headers("viewer"))
    metrics = await client.get("/metrics", headers=headers("viewer"))

    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()["ready"]) == (200, True)
    assert metrics.status_code == 200
    assert 'cxrwatch_api_requests_total{method="GET",route="/readyz"' in metrics.text


async def test_redis_down_answers_503(prefix: str) -> None:
    # Nothing listens on port 9 of loopback (discard), so Redis "is down".
    settings = settings_for(prefix, redis_url="redis://127.0.0.1:9/0")
    async with api_client(settings) as client:
        ready = await client.get("/readyz", headers=headers("viewer"))
        listing = await client.get("/alerts", headers=headers("viewer"))
        live = await client.get("/healthz")

    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert listing.status_code == 503
    assert live.status_code == 200


async def test_openapi_documents_every_endpoint(client: httpx.AsyncClient) -> None:
    anonymous = await client.get("/openapi.json")
    response = await client.get("/openapi.json", headers=headers("viewer"))

    assert anonymous.status_code == 401
    paths = response.json()["paths"]
    for path in (
        "/alerts",
        "/alerts/{alert_id}",
        "/alerts/{alert_id}/acknowledge",
        "/alerts/{alert_id}/resolve",
        "/alerts/stream",
        "/audit",
        "/auth/whoami",
        "/auth/stream-token",
        "/patients/latest",
        "/patients/{patient_key}/risk",
        "/healthz",
        "/readyz",
        "/metrics",
    ):
        assert path in paths
