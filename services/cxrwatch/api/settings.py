"""Settings of the API, read from ``CXRWATCH_*`` environment variables.

Secrets have no defaults: API keys are configured as SHA-256 hashes, the
signing secret of stream tokens comes from the environment. The one built-in
key exists only with ``CXRWATCH_API_LOCAL_DEV=true``, which the embedded
default sets, and only while the API listens on a loopback address.
"""

import ipaddress
import re
from enum import StrEnum
from typing import Self
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from cxrwatch.core.settings import ServiceSettings

LOCAL_DEV_KEY = "cxrwatch-local-dev"
"""The key ``CXRWATCH_API_LOCAL_DEV`` enables, with the admin role."""

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_PLACEHOLDERS = ("changeme", "change-me", "secret", "example", "xxxx")


class Role(StrEnum):
    """What a principal may do; each role includes the ones before it."""

    VIEWER = "viewer"
    RESPONDER = "responder"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Position in viewer < responder < admin."""
        return list(Role).index(self)

    def allows(self, needed: "Role") -> bool:
        """True when this role includes ``needed``."""
        return self.rank >= needed.rank


class ApiKeyOwner(BaseModel):
    """Who holds an API key, as configured next to the key's hash."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[\w.@:-]+$")
    role: Role


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiSettings(ServiceSettings):
    """Settings of the API service."""

    api_host: str = Field("127.0.0.1", description="Address uvicorn listens on.")
    api_port: int = Field(8080, ge=0, le=65535, description="Port uvicorn uses.")
    band_thresholds: tuple[float, float, float] = Field(
        (0.3, 0.6, 0.85),
        description="Lower edges of moderate, high and critical (as the alerter).",
    )
    api_scan_budget: int = Field(
        2000, ge=10, description="Most index entries one alert listing examines."
    )
    api_keys: dict[str, ApiKeyOwner] = Field(
        default_factory=dict,
        description='JSON {"<sha256 hex of key>": {"name": ..., "role": ...}}.',
    )
    api_local_dev: bool = Field(
        False, description="Accept the local-development key; loopback only."
    )
    api_rate_per_minute: float = Field(
        600.0, gt=0, description="Requests a minute one principal may make."
    )
    api_rate_burst: int = Field(
        120, ge=1, description="Requests one principal may make at once."
    )
    api_auth_failures_per_minute: float = Field(
        30.0, gt=0, description="Failed authentications a minute per client address."
    )
    api_max_body_bytes: int = Field(
        16_384, ge=1024, description="Largest request body accepted."
    )
    api_cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed to call the API from a browser; none by default.",
    )
    api_hsts: bool = Field(
        False, description="Send Strict-Transport-Security (behind TLS only)."
    )
    api_oidc_issuer: str | None = Field(
        None, description="OIDC issuer URL whose tokens are accepted; none: off."
    )
    api_oidc_audience: str | None = Field(
        None, description="Audience (aud) the tokens must name."
    )
    api_oidc_jwks_url: str | None = Field(
        None, description="JWKS URL; by default found through discovery."
    )
    api_oidc_algorithms: list[str] = Field(
        ["RS256", "PS256", "ES256"], description="Signature algorithms accepted."
    )
    api_oidc_roles_claim: str = Field(
        "roles", description="Claim (dotted path) holding the person's roles."
    )
    api_oidc_role_map: dict[str, Role] = Field(
        default_factory=dict,
        description='JSON {"<claim value>": "viewer|responder|admin"}.',
    )
    api_oidc_leeway_s: int = Field(
        30, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat."
    )
    api_oidc_jwks_ttl_s: int = Field(
        600, ge=30, description="How long fetched keys are trusted."
    )
    api_token_secret: SecretStr | None = Field(
        None,
        description="Signs stream tokens; set it when replicas share clients. "
        "Unset: a random secret per process.",
    )
    api_stream_token_ttl_s: int = Field(
        300, ge=10, le=3600, description="Lifetime of a stream token."
    )
    api_stream_heartbeat_s: float = Field(
        15.0, gt=0, le=60, description="Idle time before a stream sends a comment."
    )
    api_stream_max_clients: int = Field(
        100, ge=1, description="Live streams one API process serves at once."
    )

    @field_validator("api_oidc_algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: list[str]) -> list[str]:
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
        allowed |= {"ES256", "ES384", "ES512", "EdDSA"}
        refused = [a for a in algorithms if a not in allowed]
        if refused or not algorithms:
            raise ValueError(
                f"CXRWATCH_API_OIDC_ALGORITHMS {refused or algorithms}: only "
                f"asymmetric algorithms ({', '.join(sorted(allowed))}) are accepted"
            )
        return algorithms

    @field_validator("api_token_secret")
    @classmethod
    def _no_placeholder(cls, secret: SecretStr | None) -> SecretStr | None:
        refuse_placeholder(secret, "CXRWATCH_API_TOKEN_SECRET")
        return secret

    @field_validator("api_keys")
    @classmethod
    def _hashes_only(cls, keys: dict[str, ApiKeyOwner]) -> dict[str, ApiKeyOwner]:
        for digest in keys:
            if not _SHA256_HEX.match(digest):
                raise ValueError(
                    f"CXRWATCH_API_KEYS entry {digest[:8]}... is not the lower-case "
                    "hex SHA-256 of a key: store hashes, never the keys"
                )
        return keys

    @model_validator(mode="after")
    def _local_dev_on_loopback(self) -> Self:
        if self.api_local_dev and not is_loopback(self.api_host):
            raise ValueError(
                f"CXRWATCH_API_LOCAL_DEV=true while CXRWATCH_API_HOST={self.api_host}:"
                " the local-development key is accepted only on a loopback address"
            )
        return self

    @model_validator(mode="after")
    def _oidc_complete(self) -> Self:
        if self.api_oidc_issuer is None:
            return self
        if not self.api_oidc_audience:
            raise ValueError(
                "CXRWATCH_API_OIDC_ISSUER is set but CXRWATCH_API_OIDC_AUDIENCE "
                "is not: tokens must be checked for this API's audience"
            )
        for name, url in (
            ("CXRWATCH_API_OIDC_ISSUER", self.api_oidc_issuer),
            ("CXRWATCH_API_OIDC_JWKS_URL", self.api_oidc_jwks_url),
        ):
            if url is not None and not _trusted_url(url):
                raise ValueError(
                    f"{name}={url}: keys must come over https "
                    "(plain http only on a loopback address)"
                )
        return self


def _trusted_url(url: str) -> bool:
    parsed = urlsplit(url)
    if parsed.scheme == "https" and parsed.hostname:
        return True
    return parsed.scheme == "http" and is_loopback(parsed.hostname or "")


def refuse_placeholder(secret: SecretStr | None, name: str) -> None:
    """Raise when a configured secret is short or looks like a placeholder."""
    if secret is None:
        return
    value = secret.get_secret_value()
    if len(value) < 32 or any(word in value.lower() for word in _PLACEHOLDERS):
        raise ValueError(
            f"{name} must be at least 32 random characters, not a placeholder"
        )
