"""Builds the API application from its settings.

At start-up it opens two Redis pools (one for requests, one for the blocking
reads of live streams, so streams cannot starve requests), the alert store
over each, and the authenticator; at shutdown it closes them. Redis errors
reach clients as 503, never as a stack trace.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware

from cxrwatch import __version__
from cxrwatch.api.accesslog import AccessLog
from cxrwatch.api.principals import ApiKeys, Authenticator
from cxrwatch.api.protection import BodyLimit, SecurityHeaders
from cxrwatch.api.ratelimit import RateLimiter
from cxrwatch.api.routes import alerts, health, patients
from cxrwatch.api.settings import ApiSettings
from cxrwatch.core.alertstore import AlertStore
from cxrwatch.core.errors import DependencyUnavailable

logger = logging.getLogger(__name__)

DESCRIPTION = """\
Deterioration alerts raised from chest radiographs and clinical data, each
patient's risk over time, and a live feed of new alerts.

Systems authenticate with an API key in `X-API-Key`; people with an OIDC
bearer token. Roles: viewer (read), responder (acknowledge, resolve), admin
(audit trail). Not for clinical use.
"""


def _open_state(app: FastAPI, settings: ApiSettings) -> None:
    redis = aioredis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=5
    )
    app.state.settings = settings
    app.state.redis = redis
    app.state.store = AlertStore(redis, prefix=settings.redis_prefix)
    keys = ApiKeys(settings)
    if not len(keys):
        logger.warning(
            "no API key configured (CXRWATCH_API_KEYS is empty): "
            "only bearer tokens can authenticate"
        )
    app.state.authenticator = Authenticator(keys, bearer=None)
    app.state.rate_limiter = RateLimiter(
        settings.api_rate_per_minute, settings.api_rate_burst
    )
    app.state.auth_failures = RateLimiter(
        settings.api_auth_failures_per_minute,
        int(settings.api_auth_failures_per_minute),
    )


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("Redis unavailable for %s: %s", request.method, exc)
    return JSONResponse(
        {"detail": "the alert store (Redis) does not answer; retry shortly"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The API with routes, middleware and start-up wiring."""
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _open_state(app, settings)
        logger.info(
            "API ready: Redis prefix %s, %d API key(s)",
            settings.redis_prefix,
            len(settings.api_keys),
        )
        try:
            yield
        finally:
            await app.state.redis.aclose()

    app = FastAPI(
        title="cxrwatch API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.add_exception_handler(DependencyUnavailable, _unavailable)
    for router in (alerts.router, patients.router, health.router):
        app.include_router(router)

    # Added last runs first: the access log sees every answer, limits included.
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, max_bytes=settings.api_max_body_bytes)
    app.add_middleware(SecurityHeaders, hsts=settings.api_hsts)
    app.add_middleware(AccessLog)
    return app
