"""The alert board in a real headless Chromium against the API and Redis.

A responder signs in with a test key, sees an alert appear live when the test
records one through ``AlertStore`` (as the alerter does), acknowledges it,
sees it marked, opens the patient view and finds the risk plot with one point
per score and one mark per radiograph. Screenshots go to ``test-output/``;
with ``CXRWATCH_UPDATE_DOCS_SCREENSHOT=1`` the board's is copied to
``docs/board.png``.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the
``playwright`` Python package; the browser is never downloaded. Without
either, the test is skipped with the reason.
"""

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import uvicorn
from cxrwatch.api.app import create_app
from cxrwatch.api.principals import key_digest
from cxrwatch.api.settings import ApiSettings
from cxrwatch.core.alertstore import AlertStore
from cxrwatch.core.events import Alert, FeatureChange, News2, RiskScore
from cxrwatch.core.ids import deterministic_id

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REDIS_URL = "redis://127.0.0.1:6379/0"
RESPONDER_KEY = "e2e-responder-key-3f9a61c0b2d84e75"
PATIENT = "MRN-205518@st-elsewhere"
OUTPUT = Path("test-output")
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} missing: apt-get install -y chromium",
    ),
]
playwright_api = pytest.importorskip(
    "playwright.async_api", reason="the playwright package is not installed"
)

NEWS2 = News2(
    score=6,
    clinical_risk="medium",
    components={"resp_rate": 2, "spo2": 2, "heart_rate": 1, "temperature": 1},
)
START = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=30)
# (hours after START, p_critical, SpO2 %, respiratory rate /min); two scores
# share the radiograph of hour 12: the second is a re-score on new vitals.
COURSE = [(0, 0.18, 96.0, 16.0), (12, 0.34, 93.0, 20.0), (15, 0.52, 91.0, 23.0)]
COURSE += [(26, 0.71, 88.0, 27.0)]


def score(hours: int, p: float, spo2: float, resp_rate: float) -> RiskScore:
    taken = 12 if hours == 15 else hours
    radiograph_id = deterministic_id("radiograph", PATIENT, str(taken))
    as_of = START + timedelta(hours=hours)
    return RiskScore(
        score_id=deterministic_id("score", PATIENT, str(hours)),
        request_id=deterministic_id("request", PATIENT, str(hours)),
        radiograph_id=radiograph_id,
        patient_key=PATIENT,
        acquired_at=START + timedelta(hours=taken, minutes=-10),
        as_of=as_of,
        p_critical=p,
        progression_risk=round(3 * p - 1.2, 3),
        model_name="cxr_fusion",
        model_version="1",
        clinical_values={
            "age": 68.0,
            "spo2": spo2,
            "on_oxygen": 1.0 if spo2 < 92 else 0.0,
            "resp_rate": resp_rate,
            "heart_rate": 96.0 + 10 * p,
            "temperature": 38.1,
            "crp": 40.0 + 150 * p,
        },
        news2=NEWS2,
        scored_at=as_of + timedelta(seconds=3),
    )


def alert_for(scored: RiskScore, previous: RiskScore) -> Alert:
    return Alert(
        alert_id=deterministic_id("alert", scored.score_id),
        patient_key=PATIENT,
        score_id=scored.score_id,
        radiograph_id=scored.radiograph_id,
        raised_at=scored.as_of,
        reason="band-increase",
        band="high",
        previous_band="moderate",
        p_critical=scored.p_critical,
        previous_p_critical=previous.p_critical,
        progression_risk=scored.progression_risk,
        changes=[
            FeatureChange(
                feature=name,
                previous=previous.clinical_values[name],
                current=scored.clinical_values[name],
                unit=unit,
            )
            for name, unit in (("spo2", "%"), ("resp_rate", "/min"))
        ],
        news2=NEWS2,
        model_name="cxr_fusion",
        model_version="1",
    )


@asynccontextmanager
async def api_on(prefix: str, **overrides: Any) -> AsyncIterator[str]:
    settings = ApiSettings(
        redis_url=REDIS_URL,
        redis_prefix=prefix,
        api_keys={key_digest(RESPONDER_KEY): {"name": "rrt-desk", "role": "responder"}},
        api_local_dev=False,
        api_stream_heartbeat_s=1,
        **overrides,
    )
    config = uvicorn.Config(
        create_app(settings),
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        listener.close()


@pytest.fixture
async def store() -> AsyncIterator[AlertStore]:
    prefix = f"test-e2e-{uuid.uuid4().hex[:12]}"
    redis = aioredis.from_url(REDIS_URL)
    try:
        yield AlertStore(redis, prefix=prefix)
    finally:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def test_board_live_alert_acknowledge_and_patient_plot(store: AlertStore) -> None:
    scores = [score(*step) for step in COURSE]
    for each in scores[:-1]:
        await store.record_score(each)
    earlier = alert_for(scores[2], scores[1])
    await store.record_alert(earlier)
    live = alert_for(scores[3], scores[2])
    OUTPUT.mkdir(exist_ok=True)
    problems: list[str] = []

    async with (
        api_on(store.feed_key.split(":")[0]) as url,
        playwright_api.async_playwright() as driver,
    ):
        browser = await driver.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        page = await browser.new_page(viewport={"width": 1280, "height": 720})
        page.on(
            "console",
            lambda m: problems.append(m.text) if m.type == "error" else None,
        )
        page.on("pageerror", lambda error: problems.append(str(error)))
        expect = playwright_api.expect

        await page.goto(f"{url}/board/")
        await page.fill("#api-key", RESPONDER_KEY)
        await page.click("#sign-in-form button[type=submit]")
        await expect(page.locator("#who")).to_have_text("rrt-desk (responder)")
        await expect(page.locator("#live")).to_have_text("Live", timeout=10_000)
        await expect(page.locator("#alerts tbody tr")).to_have_count(1)

        await store.record_score(scores[3])
        await store.record_alert(live)
        row = page.locator(f'tr[data-alert-id="{live.alert_id}"]')
        await expect(row).to_be_visible(timeout=10_000)
        await expect(page.locator("#alerts tbody tr").first).to_have_attribute(
            "data-alert-id", live.alert_id
        )
        await expect(row.locator(".band")).to_have_text("high")
        await expect(row).to_contain_text("0.52 → 0.71")

        await row.get_by_role("button", name="Acknowledge").click()
        await expect(row.locator(".status")).to_have_text("acknowledged by rrt-desk")
        await expect(row.get_by_role("button", name="Acknowledge")).to_have_count(0)
        await page.screenshot(path=str(OUTPUT / "board.png"), full_page=True)

        await row.get_by_role("link", name=PATIENT).click()
        plot = page.locator("svg#risk-plot")
        await expect(plot).to_be_visible(timeout=10_000)
        points = await plot.locator("circle.point").count()
        radiographs = await plot.locator("polygon.radiograph").count()
        score_rows = await page.locator("#scores tbody tr").count()
        await expect(page.locator("#patient-alerts li")).to_have_count(2)
        await page.screenshot(path=str(OUTPUT / "patient.png"), full_page=True)
        await browser.close()

    assert (points, radiographs, score_rows) == (4, 3, 4)
    assert problems == []
    if os.environ.get("CXRWATCH_UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(OUTPUT / "board.png", REPO / "docs" / "board.png")


async def test_board_survives_the_end_of_its_stream_token(store: AlertStore) -> None:
    ttl = 10
    first = score(*COURSE[0])
    later = score(*COURSE[1])
    await store.record_score(first)
    alert = alert_for(later, first)
    problems: list[str] = []

    async with (
        api_on(store.feed_key.split(":")[0], api_stream_token_ttl_s=ttl) as url,
        playwright_api.async_playwright() as driver,
    ):
        browser = await driver.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        page = await browser.new_page()
        page.on("pageerror", lambda error: problems.append(str(error)))
        expect = playwright_api.expect
        await page.goto(f"{url}/board/")
        await page.fill("#api-key", RESPONDER_KEY)
        await page.click("#sign-in-form button[type=submit]")
        await expect(page.locator("#live")).to_have_text("Live", timeout=10_000)

        # The token ends the stream; the page must take a new one and resume.
        await asyncio.sleep(ttl + 5)
        await store.record_alert(alert)
        row = page.locator(f'tr[data-alert-id="{alert.alert_id}"]')
        await expect(row).to_be_visible(timeout=15_000)
        await expect(page.locator("#live")).to_have_text("Live")
        await browser.close()

    assert problems == []
