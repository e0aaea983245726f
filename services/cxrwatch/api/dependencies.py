"""What route handlers receive, declared once as ``Annotated`` aliases.

``Viewer``, ``Responder`` and ``Admin`` authenticate the request, apply the
principal's rate limit and check the role; ``Store`` and ``Settings`` are the
objects :func:`cxrwatch.api.app.create_app` built at start-up.
"""

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from cxrwatch.api.principals import AuthenticationFailed, Authenticator, Principal
from cxrwatch.api.ratelimit import RateLimiter
from cxrwatch.api.settings import ApiSettings, Role
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
    request: Request,
    api_key: str | None,
    bearer_token: str | None,
    authenticate: Callable[[], Awaitable[Principal]] | None = None,
) -> Principal:
    """Authenticate and rate-limit; 401 or 429 when that fails."""
    failures: RateLimiter = request.app.state.auth_failures
    client = _client(request)
    wait = failures.exhausted(client)
    if wait:
        raise _too_many(wait, "failed authentications from this address")
    authenticator: Authenticator = request.app.state.authenticator
    try:
        if authenticate is not None:
            principal = await authenticate()
        else:
            principal = await authenticator.authenticate(api_key, bearer_token)
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


async def authenticated(
    request: Request,
    api_key: Annotated[str | None, Security(api_key_header)],
    credentials: Annotated[
        HTTPAuthorizationCredentials | None, Security(bearer_scheme)
    ],
) -> Principal:
    """The caller, from an API key or a bearer token."""
    token = credentials.credentials if credentials else None
    return await check_credentials(request, api_key, token)


def requiring(role: Role) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that admits principals whose role includes ``role``."""

    async def check_role(
        principal: Annotated[Principal, Depends(authenticated)],
    ) -> Principal:
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


def _settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


Viewer = Annotated[Principal, Depends(requiring(Role.VIEWER))]
Responder = Annotated[Principal, Depends(requiring(Role.RESPONDER))]
Admin = Annotated[Principal, Depends(requiring(Role.ADMIN))]
Store = Annotated[AlertStore, Depends(_store)]
Settings = Annotated[ApiSettings, Depends(_settings)]
