"""Set-up shared by the API's integration tests; it holds no test itself.

Each test gets its own Redis key prefix and deletes every key under it, so
tests never see each other's alerts and never touch anyone else's keys.
Alerts and scores are written through the alerter's own ``AlertStore``
methods, as in production.
"""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import redis.asyncio as aioredis
from cxrwatch.api.app import create_app
from cxrwatch.api.principals import key_digest
from cxrwatch.api.settings import ApiSettings
from cxrwatch.core.alertstore import AlertStore
from cxrwatch.core.events import Alert, FeatureChange, News2, RiskScore
from cxrwatch.core.ids import deterministic_id

REDIS_URL = "redis://127.0.0.1:6379/0"
KEYS = {
    "viewer": "test-viewer-key-6c1f0e9d2b7a4e31",
    "responder": "test-responder-key-94d2c8a1f03b5e77",
    "admin": "test-admin-key-0a7e3b9c5d1f2e48",
}
NAMES = {role: f"{role}-bot" for role in KEYS}
T0 = datetime(2026, 3, 14, 8, 0, tzinfo=UTC)
VITALS = {
    "age": 71.0,
    "sex": 1.0,
    "spo2": 91.0,
    "on_oxygen": 1.0,
    "resp_rate": 24.0,
    "heart_rate": 108.0,
    "temperature": 38.4,
    "systolic_bp": 104.0,
    "wbc": 13.2,
    "lymphocytes": 0.6,
    "crp": 142.0,
    "ldh": 410.0,
}


def new_prefix() -> str:
    """A key prefix no other test uses."""
    return f"test-api-{uuid.uuid4().hex[:12]}"


def headers(role: str) -> dict[str, str]:
    """Request headers authenticating as the test principal of ``role``."""
    return {"X-API-Key": KEYS[role]}


def settings_for(prefix: str, **overrides: Any) -> ApiSettings:
    """API settings on the test prefix with one key per role."""
    keys = {
        key_digest(key): {"name": NAMES[role], "role": role}
        for role, key in KEYS.items()
    }
    values: dict[str, Any] = {
        "redis_url": REDIS_URL,
        "redis_prefix": prefix,
        "api_keys": keys,
        "api_local_dev": False,
    }
    values.update(overrides)
    return ApiSettings(**values)


async def delete_prefix(prefix: str) -> None:
    """Delete every key under ``prefix``."""
    redis = aioredis.from_url(REDIS_URL)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


@asynccontextmanager
async def store_on(prefix: str) -> AsyncIterator[AlertStore]:
    """An alert store on ``prefix``, as the alerter opens it."""
    redis = aioredis.from_url(REDIS_URL)
    try:
        yield AlertStore(redis, prefix=prefix)
    finally:
        await redis.aclose()


@asynccontextmanager
async def api_client(settings: ApiSettings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process, start-up and shutdown run."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test"
        ) as client:
            yield client


def make_score(
    patient_key: str, as_of: datetime, p_critical: float, **values: float
) -> RiskScore:
    """A score as the scorer emits it, with realistic clinical values."""
    clinical: dict[str, float | None] = {**VITALS, **values}
    radiograph_id = deterministic_id("radiograph", patient_key, as_of.isoformat())
    request_id = deterministic_id("request", radiograph_id, as_of.isoformat())
    return RiskScore(
        score_id=deterministic_id("score", request_id),
        request_id=request_id,
        radiograph_id=radiograph_id,
        patient_key=patient_key,
        acquired_at=as_of - timedelta(minutes=20),
        as_of=as_of,
        p_critical=p_critical,
        progression_risk=round(2.5 * p_critical - 1.0, 3),
        model_name="cxr_fusion",
        model_version="1",
        clinical_values=clinical,
        news2=News2(
            score=7,
            clinical_risk="high",
            components={"resp_rate": 2, "spo2": 2, "heart_rate": 1, "temperature": 1},
        ),
        scored_at=as_of + timedelta(seconds=2),
    )


def make_alert(
    patient_key: str,
    raised_at: datetime,
    band: str = "high",
    p_critical: float = 0.72,
    previous_p_critical: float | None = 0.41,
    previous_band: str | None = "moderate",
) -> Alert:
    """An alert as the alerter raises it for a score at ``raised_at``."""
    score = make_score(patient_key, raised_at, p_critical, spo2=88.0)
    return Alert(
        alert_id=deterministic_id("alert", score.score_id),
        patient_key=patient_key,
        score_id=score.score_id,
        radiograph_id=score.radiograph_id,
        raised_at=raised_at,
        reason="band-increase",
        band=band,  # type: ignore[arg-type]
        previous_band=previous_band,  # type: ignore[arg-type]
        p_critical=p_critical,
        previous_p_critical=previous_p_critical,
        progression_risk=score.progression_risk,
        changes=[
            FeatureChange(feature="spo2", previous=95.0, current=88.0, unit="%"),
            FeatureChange(
                feature="resp_rate", previous=18.0, current=26.0, unit="/min"
            ),
        ],
        news2=score.news2,
        model_name="cxr_fusion",
        model_version="1",
    )
