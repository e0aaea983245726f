"""Builds the API application from its settings.

At start-up it opens two Redis pools (one for requests, one for the blocking
reads of live streams, so streams cannot starve requests), the alert store
over each, the authenticator (API keys, and OIDC when an issuer is set) and
the stream-token signer; at shutdown it closes them. Redis errors reach
clients as 503, never as a stack trace.

Middleware, outermost first: access log (route templates only), security
headers, request-size limit, then CORS when origins are configured.
The OpenAPI document is served at ``/openapi.json`` to viewers; the page
lives under ``/board/`` and is public, since it holds no data.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware

from cxrwatch import __version__
from cxrwatch.api.accesslog import AccessLog
from cxrwatch.api.dependencies import Viewer
from cxrwatch.api.oidc import OidcVerifier
from cxrwatch.api.principals import ApiKeys, Authenticator
from cxrwatch.api.protection import BodyLimit, SecurityHeaders
from cxrwatch.api.ratelimit import RateLimiter
from cxrwatch.api.routes import alerts, audit, auth, board, health, patients, stream
from cxrwatch.api.routes.stream import StreamSlots
from cxrwatch.api.settings import ApiSettings
from cxrwatch.api.streamtokens import StreamTokens
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


def _open_state(
    app: FastAPI, settings: ApiSettings, jwks: dict[str, Any] | None
) -> None:
    redis = aioredis.from_url(
        settings.redis_url, socket_connect_timeout=2, socket_timeout=5
    )
    # Stream reads block for a heartbeat, so their socket waits longer.
    stream_redis = aioredis.from_url(
        settings.redis_url,
        socket_connect_timeout=2,
        socket_timeout=settings.api_stream_heartbeat_s + 5,
    )
    app.state.settings = settings
    app.state.redis = redis
    app.state.stream_redis = stream_redis
    app.state.store = AlertStore(redis, prefix=settings.redis_prefix)
    app.state.stream_store = AlertStore(stream_redis, prefix=settings.redis_prefix)
    app.state.stream_slots = StreamSlots(settings.api_stream_max_clients)
    keys = ApiKeys(settings)
    oidc = OidcVerifier(settings, jwks=jwks) if settings.api_oidc_issuer else None
    if not len(keys) and oidc is None:
        logger.warning(
            "no API key (CXRWATCH_API_KEYS) and no OIDC issuer "
            "(CXRWATCH_API_OIDC_ISSUER) configured: nobody can authenticate"
        )
    app.state.oidc = oidc
    app.state.authenticator = Authenticator(keys, bearer=oidc)
    secret = settings.api_token_secret
    if secret is None:
        logger.warning(
            "CXRWATCH_API_TOKEN_SECRET is not set: stream tokens are signed with a "
            "per-process secret and work only on the replica that issued them"
        )
    app.state.stream_tokens = StreamTokens(
        secret.get_secret_value().encode() if secret else None,
        settings.api_stream_token_ttl_s,
    )
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


def create_app(
    settings: ApiSettings | None = None, oidc_jwks: dict[str, Any] | None = None
) -> FastAPI:
    """The API with routes, middleware and start-up wiring.

    ``oidc_jwks`` fixes the issuer's key set instead of fetching it (tests).
    """
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        _open_state(app, settings, oidc_jwks)
        logger.info(
            "API ready: Redis prefix %s, %d API key(s), OIDC %s",
            settings.redis_prefix,
            len(settings.api_keys),
            "on" if settings.api_oidc_issuer else "off",
        )
        try:
            yield
        finally:
            await app.state.redis.aclose()
            await app.state.stream_redis.aclose()
            if app.state.oidc is not None:
                await app.state.oidc.aclose()

    app = FastAPI(
        title="cxrwatch API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_exception_handler(DependencyUnavailable, _unavailable)
    # The stream's fixed path must come before /alerts/{alert_id}.
    for router in (
        stream.router,
        alerts.router,
        patients.router,
        audit.router,
        auth.router,
        health.router,
        board.router,
    ):
        app.include_router(router)
    board.mount_static(app)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_: Viewer) -> JSONResponse:
        return JSONResponse(app.openapi())

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
