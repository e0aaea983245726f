"""Set-up shared by the API's integration tests; it holds no test itself.

Each test gets its own Redis key prefix and deletes every key under it, so
tests never see each other's alerts and never touch anyone else's keys.
Alerts and scores are written through the alerter's own ``AlertStore``
methods, as in production.
"""

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import redis.asyncio as aioredis
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from cxrwatch.api.app import create_app
from cxrwatch.api.principals import key_digest
from cxrwatch.api.settings import ApiSettings
from cxrwatch.core.alertstore import AlertStore
from cxrwatch.core.events import Alert, FeatureChange, News2, RiskScore
from cxrwatch.core.ids import deterministic_id
from jwt.algorithms import RSAAlgorithm

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


def _server(
    settings: ApiSettings, **app_options: Any
) -> tuple[uvicorn.Server, socket.socket]:
    app = create_app(settings, **app_options)
    config = uvicorn.Config(
        app, log_config=None, access_log=False, timeout_graceful_shutdown=2
    )
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    return uvicorn.Server(config), listener


@asynccontextmanager
async def serving(settings: ApiSettings, **app_options: Any) -> AsyncIterator[str]:
    """The API served by uvicorn on a free loopback port, in this event loop."""
    server, listener = _server(settings, **app_options)
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


@contextmanager
def serving_in_thread(settings: ApiSettings, **app_options: Any) -> Iterator[str]:
    """The API served by uvicorn on a free loopback port, in its own thread."""
    server, listener = _server(settings, **app_options)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "API did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


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


class Issuer:
    """A stand-in OIDC issuer on loopback: discovery, JWKS, signed tokens.

    It holds RSA key pairs made for the test run; ``publish`` chooses which
    public keys its JWKS shows, so tests can rotate keys.
    """

    audience = "cxrwatch-api"

    def __init__(self) -> None:
        self.keys = {kid: rsa.generate_private_key(65537, 2048) for kid in ("k1", "k2")}
        self.published = ["k1"]
        self.fetches = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"}
                elif self.path == "/jwks":
                    issuer.fetches += 1
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                raw = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test output is not the place for these."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "Issuer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def jwks(self) -> dict[str, Any]:
        """The published public keys as a JWK set."""
        keys = []
        for kid in self.published:
            jwk = json.loads(RSAAlgorithm.to_jwk(self.keys[kid].public_key()))
            keys.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": keys}

    def token(self, kid: str = "k1", lifetime_s: int = 300, **claims: Any) -> str:
        """A token signed with key ``kid``; ``claims`` override the defaults."""
        now = int(time.time())
        body = {
            "iss": self.url,
            "aud": self.audience,
            "sub": "0f6d2c1e-nurse",
            "preferred_username": "nurse.jones",
            "iat": now,
            "exp": now + lifetime_s,
            "roles": ["responder"],
            **claims,
        }
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.keys[kid], algorithm="RS256", headers={"kid": kid})

    def settings(self) -> dict[str, Any]:
        """API settings that trust this issuer."""
        return {"api_oidc_issuer": self.url, "api_oidc_audience": self.audience}
