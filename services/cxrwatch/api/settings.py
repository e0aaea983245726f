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
    redis_prefix: str = Field("cxr", description="Prefix of every Redis key.")
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


def refuse_placeholder(secret: SecretStr | None, name: str) -> None:
    """Raise when a configured secret is short or looks like a placeholder."""
    if secret is None:
        return
    value = secret.get_secret_value()
    if len(value) < 32 or any(word in value.lower() for word in _PLACEHOLDERS):
        raise ValueError(
            f"{name} must be at least 32 random characters, not a placeholder"
        )
