"""OIDC bearer tokens: keys injected or fetched through a mock transport,
roles from flat or nested claims, key rotation, refusals."""

import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cxrwatch.api.oidc import OidcVerifier
from cxrwatch.api.principals import AuthenticationFailed, NoRole
from cxrwatch.api.settings import ApiSettings, Role
from cxrwatch.core.errors import DependencyUnavailable
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://idp.hospital.test/realms/wards"
RSA_KEY = rsa.generate_private_key(65537, 2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk(kid: str, key: Any) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        body = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    else:
        body = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    return {**body, "kid": kid}


def token(
    kid: str = "r1", key: Any = RSA_KEY, alg: str = "RS256", **claims: Any
) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": "cxrwatch",
        "sub": "a1b2",
        "exp": now + 60,
        "iat": now,
        **claims,
    }
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


def settings(**values: Any) -> ApiSettings:
    return ApiSettings(api_oidc_issuer=ISSUER, api_oidc_audience="cxrwatch", **values)


async def test_injected_keys_and_flat_roles() -> None:
    verifier = OidcVerifier(settings(), jwks={"keys": [jwk("r1", RSA_KEY)]})

    principal = await verifier.verify(
        token(roles=["viewer", "responder"], preferred_username="dr.amaral")
    )

    assert (principal.name, principal.role, principal.via) == (
        "dr.amaral",
        Role.RESPONDER,
        "oidc",
    )


async def test_nested_claim_with_a_role_map_and_an_ec_key() -> None:
    verifier = OidcVerifier(
        settings(
            api_oidc_roles_claim="realm_access.roles",
            api_oidc_role_map={"rrt-lead": "admin", "ward-nurse": "responder"},
        ),
        jwks={"keys": [jwk("e1", EC_KEY)]},
    )

    principal = await verifier.verify(
        token("e1", EC_KEY, "ES256", realm_access={"roles": ["ward-nurse", "x"]})
    )

    assert principal.role is Role.RESPONDER
    assert principal.name == "a1b2"


async def test_a_token_without_a_known_role_has_no_role() -> None:
    verifier = OidcVerifier(settings(), jwks={"keys": [jwk("r1", RSA_KEY)]})

    with pytest.raises(NoRole):
        await verifier.verify(token(roles=["superuser"]))


async def test_algorithm_outside_the_list_is_refused() -> None:
    verifier = OidcVerifier(
        settings(api_oidc_algorithms=["ES256"]), jwks={"keys": [jwk("r1", RSA_KEY)]}
    )

    with pytest.raises(AuthenticationFailed, match="algorithm"):
        await verifier.verify(token(roles=["viewer"]))


async def test_rotated_key_is_fetched_through_discovery() -> None:
    second = rsa.generate_private_key(65537, 2048)
    published = [jwk("r1", RSA_KEY)]
    fetched: list[str] = []

    def idp(request: httpx.Request) -> httpx.Response:
        fetched.append(request.url.path)
        if request.url.path.endswith("/openid-configuration"):
            return httpx.Response(200, json={"jwks_uri": f"{ISSUER}/certs"})
        return httpx.Response(200, json={"keys": published})

    http = httpx.AsyncClient(transport=httpx.MockTransport(idp))
    verifier = OidcVerifier(settings(), http=http, refetch_s=0.0)

    first = await verifier.verify(token(roles=["viewer"]))
    published.append(jwk("r2", second))
    rotated = await verifier.verify(token("r2", second, roles=["admin"]))
    again = await verifier.verify(token(roles=["viewer"]))
    await verifier.aclose()

    assert (first.role, rotated.role, again.role) == (
        Role.VIEWER,
        Role.ADMIN,
        Role.VIEWER,
    )
    assert fetched == [
        "/realms/wards/.well-known/openid-configuration",
        "/realms/wards/certs",
        "/realms/wards/.well-known/openid-configuration",
        "/realms/wards/certs",
    ]


async def test_unreachable_issuer_is_a_dependency_failure() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    http = httpx.AsyncClient(transport=httpx.MockTransport(down))
    verifier = OidcVerifier(settings(), http=http)

    with pytest.raises(DependencyUnavailable):
        await verifier.verify(token(roles=["viewer"]))
    await verifier.aclose()
