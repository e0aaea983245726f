"""Short-lived signed tokens that let a browser open the live stream.

A browser's ``EventSource`` cannot send headers, so the page first asks
``POST /auth/stream-token`` (with its API key) for a token and then opens
``/alerts/stream?token=...``. The token names the principal and its role,
expires after ``CXRWATCH_API_STREAM_TOKEN_TTL_S`` and is good for the stream
only: it is an HMAC-SHA256 over its own claims with the API's secret, so it
needs no server-side state, and it is worthless on any other endpoint.
"""

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cxrwatch.api.principals import AuthenticationFailed, Principal
from cxrwatch.api.settings import Role

_PURPOSE = "cxrwatch-stream"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class StreamTokens:
    """Issues and checks stream tokens."""

    def __init__(
        self,
        secret: bytes | None,
        ttl_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret or secrets.token_bytes(32)
        self._ttl = ttl_s
        self._clock = clock

    def _signature(self, payload: str) -> str:
        mac = hmac.new(self._secret, payload.encode(), hashlib.sha256)
        return _b64(mac.digest())

    def issue(self, principal: Principal) -> tuple[str, datetime]:
        """A token for ``principal`` and the time it expires."""
        expires = int(self._clock()) + self._ttl
        claims = {
            "p": _PURPOSE,
            "n": principal.name,
            "r": principal.role.value,
            "exp": expires,
        }
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        token = f"{payload}.{self._signature(payload)}"
        return token, datetime.fromtimestamp(expires, UTC)

    def verify(self, token: str) -> tuple[Principal, float]:
        """The token's principal and expiry (epoch seconds), if it is valid."""
        payload, _, signature = token.partition(".")
        if not hmac.compare_digest(
            signature.encode(), self._signature(payload).encode()
        ):
            raise AuthenticationFailed("stream token is not valid")
        try:
            claims = json.loads(_unb64(payload))
            principal = Principal(
                name=str(claims["n"]), role=Role(claims["r"]), via="stream-token"
            )
            expires = float(claims["exp"])
        except (binascii.Error, ValueError, KeyError, TypeError) as exc:
            raise AuthenticationFailed("stream token is not valid") from exc
        if claims.get("p") != _PURPOSE:
            raise AuthenticationFailed("stream token is not valid")
        if expires <= self._clock():
            raise AuthenticationFailed("stream token expired; ask for a new one")
        return principal, expires
