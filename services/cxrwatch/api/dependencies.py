"""What route handlers receive, declared once as ``Annotated`` aliases.

``Viewer``, ``Responder`` and ``Admin`` authenticate the request (API key or
bearer token), apply the principal's rate limit and check the role.
``StreamViewer`` also accepts a stream token in the query string, and only the
live stream uses it. ``Store``, ``StreamStore``, ``Settings`` and
``Tokens`` are the objects :func:`cxrwatch.api.app.create_app` built.
"""

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from cxrwatch.api.principals import (
    AuthenticationFailed,
    Authenticator,
    NoRole,
    Principal,
)
from cxrwatch.api.ratelimit import RateLimiter
from cxrwatch.api.settings import ApiSettings, Role
from cxrwatch.api.streamtokens import StreamTokens
from cxrwatch.core.alertstore import AlertStore

logger = logging.getLogger(__name__)

api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="API key of a system; configured by its SHA-256 hash.",
)
bearer_scheme = HTTPBearer(
    auto_error=False, description="OIDC token of a person, from the configured issuer."
)


def _too_many(retry_after: float, what: str) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail=f"too many {what}; retry later",
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
    )


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def check_credentials(
    request: Request, authenticate: Callable[[], Awaitable[Principal]]
) -> Principal:
    """Run ``authenticate`` under the failure and rate limits.

    401 when the credentials fail, 403 when a valid token grants no role,
    429 when this address failed too often or the principal asks too often.
    """
    failures: RateLimiter = request.app.state.auth_failures
    client = _client(request)
    wait = failures.exhausted(client)
    if wait:
        raise _too_many(wait, "failed authentications from this address")
    try:
        principal = await authenticate()
    except NoRole as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=str(exc)) from exc
    except AuthenticationFailed as exc:
        failures.take(client)
        logger.info("authentication failed: %s", exc)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=str(exc),
            headers={"WWW-Authenticate": 'Bearer, ApiKey header="X-API-Key"'},
        ) from exc
    request.state.principal = principal
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = limiter.take(f"{principal.via}:{principal.name}")
    if wait:
        raise _too_many(wait, "requests for this principal")
    return principal


ApiKeyHeader = Annotated[str | None, Security(api_key_header)]
BearerHeader = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]


async def authenticated(
    request: Request, api_key: ApiKeyHeader, credentials: BearerHeader
) -> Principal:
    """The caller, from an API key or a bearer token."""
    authenticator: Authenticator = request.app.state.authenticator
    token = credentials.credentials if credentials else None
    return await check_credentials(
        request, lambda: authenticator.authenticate(api_key, token)
    )


async def stream_authenticated(
    request: Request,
    api_key: ApiKeyHeader,
    credentials: BearerHeader,
    token: Annotated[
        str | None,
        Query(
            max_length=1024,
            description="Stream token from POST /auth/stream-token, for browsers.",
        ),
    ] = None,
) -> Principal:
    """The caller of the live stream: a stream token, an API key or a bearer."""
    if token is None:
        return await authenticated(request, api_key, credentials)
    tokens: StreamTokens = request.app.state.stream_tokens

    async def from_token() -> Principal:
        principal, expires = tokens.verify(token)
        request.state.stream_token_expires = expires
        return principal

    return await check_credentials(request, from_token)


def _role_check(
    role: Role, source: Callable[..., Awaitable[Principal]]
) -> Callable[[Principal], Awaitable[Principal]]:
    async def check_role(principal: Annotated[Principal, Depends(source)]) -> Principal:
        if not principal.role.allows(role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"role {principal.role} may not do this; it needs {role}",
            )
        return principal

    return check_role


def _store(request: Request) -> AlertStore:
    store: AlertStore = request.app.state.store
    return store


def _stream_store(request: Request) -> AlertStore:
    store: AlertStore = request.app.state.stream_store
    return store


def _settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def _tokens(request: Request) -> StreamTokens:
    tokens: StreamTokens = request.app.state.stream_tokens
    return tokens


Viewer = Annotated[Principal, Depends(_role_check(Role.VIEWER, authenticated))]
Responder = Annotated[Principal, Depends(_role_check(Role.RESPONDER, authenticated))]
Admin = Annotated[Principal, Depends(_role_check(Role.ADMIN, authenticated))]
StreamViewer = Annotated[
    Principal, Depends(_role_check(Role.VIEWER, stream_authenticated))
]
Store = Annotated[AlertStore, Depends(_store)]
StreamStore = Annotated[AlertStore, Depends(_stream_store)]
Settings = Annotated[ApiSettings, Depends(_settings)]
Tokens = Annotated[StreamTokens, Depends(_tokens)]
