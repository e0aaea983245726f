"""Bearer tokens of people, verified against an OIDC issuer's published keys.

A token is accepted when its signature verifies with a key from the issuer's
JWKS (found through ``/.well-known/openid-configuration`` unless
``CXRWATCH_API_OIDC_JWKS_URL`` names it), its algorithm is one of the
configured asymmetric ones, and its ``iss``, ``aud``, ``exp`` and ``sub``
claims hold. The role comes from a claim (``roles`` by default; a dotted path
such as ``realm_access.roles`` reaches into nested claims), mapped through
``CXRWATCH_API_OIDC_ROLE_MAP``; the highest role granted wins.

Keys are cached for ``jwks_ttl_s``; a token signed with an unknown key id
refetches them, at most once every 30 seconds, so key rotation
works and a flood of bad tokens does not become a flood of fetches.
"""

import asyncio
import logging
import time
from typing import Any

import httpx
import jwt

from cxrwatch.api.principals import AuthenticationFailed, NoRole, Principal
from cxrwatch.api.settings import ApiSettings, Role
from cxrwatch.core.errors import DependencyUnavailable

logger = logging.getLogger(__name__)

_REFETCH_S = 30.0
_DEFAULT_ROLE_MAP = {role.value: role for role in Role}


class OidcVerifier:
    """Verifies bearer JWTs from one issuer."""

    def __init__(
        self,
        settings: ApiSettings,
        http: httpx.AsyncClient | None = None,
        jwks: dict[str, Any] | None = None,
        refetch_s: float = _REFETCH_S,
    ) -> None:
        if not settings.api_oidc_issuer or not settings.api_oidc_audience:
            raise ValueError("an OIDC verifier needs an issuer and an audience")
        self._issuer = settings.api_oidc_issuer
        self._audience = settings.api_oidc_audience
        self._jwks_url = settings.api_oidc_jwks_url
        self._algorithms = list(settings.api_oidc_algorithms)
        self._roles_claim = settings.api_oidc_roles_claim.split(".")
        self._role_map = {**_DEFAULT_ROLE_MAP, **settings.api_oidc_role_map}
        self._leeway = settings.api_oidc_leeway_s
        self._ttl = settings.api_oidc_jwks_ttl_s
        self._http = http or httpx.AsyncClient(timeout=5.0)
        self._keys = jwt.PyJWKSet.from_dict(jwks) if jwks else None
        self._static = jwks is not None
        self._fetched_at = time.monotonic() if jwks else float("-inf")
        self._attempted_at = float("-inf")
        self._refetch_s = refetch_s
        self._lock = asyncio.Lock()

    async def aclose(self) -> None:
        """Close the HTTP client used to fetch keys."""
        await self._http.aclose()

    async def verify(self, token: str) -> Principal:
        """The person behind ``token``, or :class:`AuthenticationFailed`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed("bearer token is not a JWT") from exc
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise AuthenticationFailed(f"token algorithm {algorithm!r} not accepted")
        key = await self._key(str(header.get("kid", "")))
        try:
            claims = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationFailed(f"bearer token rejected: {exc}") from exc
        name = str(
            claims.get("preferred_username") or claims.get("email") or claims["sub"]
        )
        return Principal(name=name[:128], role=self._role(claims), via="oidc")

    def _role(self, claims: dict[str, Any]) -> Role:
        granted: Any = claims
        for part in self._roles_claim:
            granted = granted.get(part) if isinstance(granted, dict) else None
        values = [granted] if isinstance(granted, str) else granted or []
        roles = [
            self._role_map[value]
            for value in values
            if isinstance(value, str) and value in self._role_map
        ]
        if not roles:
            raise NoRole("token grants no cxrwatch role")
        return max(roles, key=lambda role: role.rank)

    async def _key(self, kid: str) -> jwt.PyJWK:
        key = self._find(kid)
        if key is not None and not self._stale():
            return key
        if not self._static:
            await self._refresh(force=key is None)
        if self._keys is None:
            raise DependencyUnavailable("OIDC keys could not be fetched yet")
        key = self._find(kid)
        if key is None:
            raise AuthenticationFailed(f"no issuer key with id {kid[:40]!r}")
        return key

    def _find(self, kid: str) -> jwt.PyJWK | None:
        if self._keys is None:
            return None
        for key in self._keys.keys:
            if key.key_id == kid or (not kid and len(self._keys.keys) == 1):
                return key
        return None

    def _stale(self) -> bool:
        return not self._static and time.monotonic() - self._fetched_at > self._ttl

    async def _refresh(self, force: bool) -> None:
        async with self._lock:
            now = time.monotonic()
            if now - self._attempted_at < self._refetch_s:
                return
            if not force and now - self._fetched_at < self._ttl:
                return
            self._attempted_at = now
            try:
                url = self._jwks_url or await self._discover()
                response = await self._http.get(url)
                response.raise_for_status()
                self._keys = jwt.PyJWKSet.from_dict(response.json())
            except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                logger.warning(
                    "OIDC keys not refreshed from %s (%s); %s",
                    self._jwks_url or self._issuer,
                    exc,
                    "keeping the cached ones" if self._keys else "none cached",
                )
                return
            self._fetched_at = now
            logger.info("OIDC keys refreshed: %d key(s)", len(self._keys.keys))

    async def _discover(self) -> str:
        url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        response = await self._http.get(url)
        response.raise_for_status()
        jwks_uri = response.json().get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise ValueError(f"{url} names no jwks_uri")
        return jwks_uri
