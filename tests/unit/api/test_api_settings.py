"""API settings refuse what would be unsafe: raw keys, local dev off loopback,
placeholder secrets, OIDC without audience or over plain http, HMAC algorithms."""

import hashlib

import pytest
from cxrwatch.api.settings import ApiSettings, Role
from pydantic import ValidationError

DIGEST = hashlib.sha256(b"a-real-key").hexdigest()


def test_defaults_are_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CXRWATCH_API_KEYS", "CXRWATCH_API_LOCAL_DEV"):
        monkeypatch.delenv(name, raising=False)

    settings = ApiSettings()

    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8080)
    assert settings.api_keys == {}
    assert settings.api_local_dev is False
    assert settings.api_cors_origins == []
    assert settings.api_oidc_issuer is None


def test_keys_come_from_json_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "CXRWATCH_API_KEYS",
        f'{{"{DIGEST}": {{"name": "ehr-bridge", "role": "viewer"}}}}',
    )

    settings = ApiSettings()

    assert settings.api_keys[DIGEST].name == "ehr-bridge"
    assert settings.api_keys[DIGEST].role is Role.VIEWER


@pytest.mark.parametrize(
    "values",
    [
        {"api_keys": {"a-raw-key": {"name": "x", "role": "viewer"}}},
        {"api_keys": {DIGEST.upper(): {"name": "x", "role": "viewer"}}},
        {"api_keys": {DIGEST: {"name": "x", "role": "superuser"}}},
        {"api_local_dev": True, "api_host": "0.0.0.0"},
        {"api_token_secret": "changeme-changeme-changeme-changeme"},
        {"api_token_secret": "short"},
        {"api_oidc_issuer": "https://idp.example"},
        {"api_oidc_issuer": "http://idp.example", "api_oidc_audience": "a"},
        {
            "api_oidc_issuer": "https://idp.example",
            "api_oidc_audience": "a",
            "api_oidc_jwks_url": "http://keys.example/jwks",
        },
        {"api_oidc_algorithms": ["HS256"]},
        {"api_oidc_algorithms": []},
    ],
)
def test_unsafe_settings_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ApiSettings(**values)


def test_local_dev_and_http_issuer_on_loopback_are_allowed() -> None:
    settings = ApiSettings(
        api_local_dev=True,
        api_host="::1",
        api_oidc_issuer="http://127.0.0.1:8443/realms/ward",
        api_oidc_audience="cxrwatch",
    )

    assert settings.api_local_dev


def test_roles_include_the_ones_below() -> None:
    assert Role.ADMIN.allows(Role.RESPONDER)
    assert Role.RESPONDER.allows(Role.VIEWER)
    assert not Role.VIEWER.allows(Role.RESPONDER)
    assert not Role.RESPONDER.allows(Role.ADMIN)
