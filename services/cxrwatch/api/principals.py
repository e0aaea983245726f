"""Who is calling: API keys for systems, bearer tokens for people.

* ``X-API-Key: <key>``: the key's SHA-256 is looked up among the configured
  hashes (``CXRWATCH_API_KEYS``); the key itself is never stored or logged.
* ``Authorization: Bearer <JWT>``: an OIDC access or ID token, verified by
  :class:`cxrwatch.api.oidc.OidcVerifier` when an issuer is configured.
* ``?token=<stream token>``: only on the live stream, a short-lived token the
  API signed for a principal that authenticated with one of the above.

Failed attempts are counted per client address; too many in a minute answer
429 before any key is checked, which slows guessing.
"""

import hashlib
import logging
from dataclasses import dataclass
from typing import Literal, Protocol

from cxrwatch.api.settings import LOCAL_DEV_KEY, ApiKeyOwner, ApiSettings, Role

logger = logging.getLogger(__name__)

Via = Literal["api-key", "oidc", "stream-token"]


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a name for the audit trail and a role."""

    name: str
    role: Role
    via: Via


class AuthenticationFailed(Exception):
    """Credentials were missing or did not verify; the reason is safe to show."""


class NoRole(AuthenticationFailed):
    """Valid credentials that grant no cxrwatch role (answered with 403)."""


class BearerVerifier(Protocol):
    """Turns a bearer token into a principal (OIDC)."""

    async def verify(self, token: str) -> Principal:
        """The token's principal, or :class:`AuthenticationFailed`."""
        ...


def key_digest(key: str) -> str:
    """The SHA-256 hex of an API key, as ``CXRWATCH_API_KEYS`` holds it."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """The configured API keys, by hash."""

    def __init__(self, settings: ApiSettings) -> None:
        self._owners: dict[str, ApiKeyOwner] = dict(settings.api_keys)
        if settings.api_local_dev:
            logger.warning(
                "local-development key enabled (CXRWATCH_API_LOCAL_DEV=true): "
                "never set it on a shared host"
            )
            self._owners[key_digest(LOCAL_DEV_KEY)] = ApiKeyOwner(
                name="local-dev", role=Role.ADMIN
            )

    def __len__(self) -> int:
        return len(self._owners)

    def principal(self, key: str) -> Principal:
        """The owner of ``key``, or :class:`AuthenticationFailed`."""
        owner = self._owners.get(key_digest(key))
        if owner is None:
            raise AuthenticationFailed("unknown API key")
        return Principal(name=owner.name, role=owner.role, via="api-key")


class Authenticator:
    """Checks the credentials a request carries."""

    def __init__(self, keys: ApiKeys, bearer: BearerVerifier | None) -> None:
        self._keys = keys
        self._bearer = bearer

    async def authenticate(
        self, api_key: str | None, bearer_token: str | None
    ) -> Principal:
        """The principal behind an API key or a bearer token."""
        if api_key and bearer_token:
            raise AuthenticationFailed("send an API key or a bearer token, not both")
        if api_key:
            return self._keys.principal(api_key)
        if bearer_token:
            if self._bearer is None:
                raise AuthenticationFailed("bearer tokens are not configured")
            return await self._bearer.verify(bearer_token)
        raise AuthenticationFailed("credentials required: X-API-Key or bearer token")
