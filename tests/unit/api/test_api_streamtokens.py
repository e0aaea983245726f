"""Stream tokens: good for their principal until they expire, and no longer."""

import base64
import json

import pytest
from cxrwatch.api.principals import AuthenticationFailed, Principal
from cxrwatch.api.settings import Role
from cxrwatch.api.streamtokens import StreamTokens

SECRET = b"0123456789abcdef0123456789abcdef"
NURSE = Principal("nurse.jones", Role.RESPONDER, "oidc")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_token_carries_name_and_role_until_expiry() -> None:
    clock = Clock()
    tokens = StreamTokens(SECRET, ttl_s=60, clock=clock)
    token, expires_at = tokens.issue(NURSE)

    principal, expires = tokens.verify(token)
    clock.now += 60

    assert principal == Principal("nurse.jones", Role.RESPONDER, "stream-token")
    assert expires == 1_800_000_060 == expires_at.timestamp()
    with pytest.raises(AuthenticationFailed, match="expired"):
        tokens.verify(token)


def test_token_from_another_secret_or_edited_is_refused() -> None:
    tokens = StreamTokens(SECRET, ttl_s=60, clock=Clock())
    other = StreamTokens(b"f" * 32, ttl_s=60, clock=Clock())
    token, _ = tokens.issue(NURSE)
    payload, _, signature = token.partition(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["r"] = "admin"
    promoted = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode()

    for forged in (other.issue(NURSE)[0], f"{promoted}.{signature}", "x", "a.b"):
        with pytest.raises(AuthenticationFailed):
            tokens.verify(forged)


def test_without_a_secret_each_process_makes_its_own() -> None:
    first = StreamTokens(None, ttl_s=60)
    second = StreamTokens(None, ttl_s=60)
    token, _ = first.issue(NURSE)

    with pytest.raises(AuthenticationFailed):
        second.verify(token)
