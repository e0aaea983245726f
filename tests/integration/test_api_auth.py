"""Who may do what: every endpoint for every kind of caller, and the guards.

Callers: nobody, a wrong key, API keys of each role, and OIDC bearer tokens
of each role from a stand-in issuer on loopback (discovery, JWKS, RS256).
Also: token rejections, rate limits, the body limit, CORS, security headers,
patient keys kept out of the logs, and the audit trail.
"""

import base64
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cxrwatch.core.alertstore import AlertStore
from test_api_world import (
    KEYS,
    NAMES,
    T0,
    Issuer,
    api_client,
    delete_prefix,
    headers,
    make_alert,
    make_score,
    new_prefix,
    settings_for,
    store_on,
)

pytestmark = pytest.mark.integration

PATIENT = "MRN-774411@st-elsewhere"
RANK = {"viewer": 0, "responder": 1, "admin": 2}

# (method, path, least role); {alert} and {patient} are filled per test.
ENDPOINTS = [
    ("GET", "/alerts", "viewer"),
    ("GET", "/alerts/{alert}", "viewer"),
    ("POST", "/alerts/{alert}/acknowledge", "responder"),
    ("POST", "/alerts/{alert}/resolve", "responder"),
    ("GET", "/patients/latest", "viewer"),
    ("GET", "/patients/{patient}/risk", "viewer"),
    ("GET", "/audit", "admin"),
    ("GET", "/auth/whoami", "viewer"),
    ("POST", "/auth/stream-token", "viewer"),
    ("GET", "/readyz", "viewer"),
    ("GET", "/metrics", "viewer"),
    ("GET", "/openapi.json", "viewer"),
]
CALLERS = [
    "nobody",
    "wrong-key",
    "viewer",
    "responder",
    "admin",
    "oidc-viewer",
    "oidc-responder",
    "oidc-admin",
    "oidc-no-role",
]


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with Issuer() as running:
        yield running


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    value = new_prefix()
    yield value
    await delete_prefix(value)


@pytest.fixture
async def store(prefix: str) -> AsyncIterator[AlertStore]:
    async with store_on(prefix) as alert_store:
        yield alert_store


@pytest.fixture
async def client(prefix: str, issuer: Issuer) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(settings_for(prefix, **issuer.settings())) as api:
        yield api


def credentials(caller: str, issuer: Issuer) -> dict[str, str]:
    if caller == "nobody":
        return {}
    if caller == "wrong-key":
        return {"X-API-Key": "not-a-key-anyone-holds"}
    if caller == "oidc-no-role":
        return {"Authorization": f"Bearer {issuer.token(roles=[])}"}
    if caller.startswith("oidc-"):
        role = caller.removeprefix("oidc-")
        return {"Authorization": f"Bearer {issuer.token(roles=[role])}"}
    return headers(caller)


def expected_status(caller: str, least: str) -> int:
    if caller in ("nobody", "wrong-key"):
        return 401
    if caller == "oidc-no-role":
        return 403
    role = caller.removeprefix("oidc-")
    return 200 if RANK[role] >= RANK[least] else 403


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "path", "least"), ENDPOINTS)
async def test_every_endpoint_for_every_caller(
    store: AlertStore,
    client: httpx.AsyncClient,
    issuer: Issuer,
    method: str,
    path: str,
    least: str,
    caller: str,
) -> None:
    alert = make_alert(PATIENT, T0)
    await store.record_alert(alert)
    await store.record_score(make_score(PATIENT, T0, 0.7))
    url = path.format(alert=alert.alert_id, patient=PATIENT)

    response = await client.request(method, url, headers=credentials(caller, issuer))

    assert response.status_code == expected_status(caller, least), response.text


async def test_healthz_needs_no_credentials(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")

    assert response.status_code == 200


async def test_whoami_names_the_person_behind_a_token(
    client: httpx.AsyncClient, issuer: Issuer
) -> None:
    token = issuer.token(roles=["viewer", "admin"])

    response = await client.get(
        "/auth/whoami", headers={"Authorization": f"Bearer {token}"}
    )

    assert response.json() == {"name": "nurse.jones", "role": "admin", "via": "oidc"}


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _hs256_with_public_key(issuer: Issuer) -> str:
    """The public key used as an HMAC secret: the classic algorithm confusion.

    Built by hand because PyJWT itself refuses to sign it.
    """
    public_pem = (
        issuer.keys["k1"]
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    claims = jwt.decode(issuer.token(), options={"verify_signature": False})
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    payload = _b64(json.dumps(claims).encode())
    mac = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{_b64(mac.digest())}"


def _forged_tokens(issuer: Issuer) -> dict[str, str]:
    claims = jwt.decode(issuer.token(), options={"verify_signature": False})
    return {
        "expired": issuer.token(lifetime_s=-120),
        "wrong audience": issuer.token(aud="another-api"),
        "wrong issuer": issuer.token(iss="https://idp.invalid"),
        "no subject": issuer.token(sub=None),
        "signed by an unpublished key": issuer.token(kid="k2"),
        "alg none": jwt.encode(claims, key=None, algorithm="none"),
        "HS256 with the public key": _hs256_with_public_key(issuer),
        "not a JWT": "abc.def",
    }


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "wrong audience",
        "wrong issuer",
        "no subject",
        "signed by an unpublished key",
        "alg none",
        "HS256 with the public key",
        "not a JWT",
    ],
)
async def test_bad_bearer_tokens_are_401(
    client: httpx.AsyncClient, issuer: Issuer, case: str
) -> None:
    token = _forged_tokens(issuer)[case]

    response = await client.get("/alerts", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401, case


async def test_key_and_token_together_are_refused(
    client: httpx.AsyncClient, issuer: Issuer
) -> None:
    both = {**headers("admin"), "Authorization": f"Bearer {issuer.token()}"}

    response = await client.get("/alerts", headers=both)

    assert response.status_code == 401


async def test_rate_limit_per_principal(prefix: str) -> None:
    settings = settings_for(prefix, api_rate_per_minute=6, api_rate_burst=3)
    async with api_client(settings) as client:
        viewer = [
            (await client.get("/auth/whoami", headers=headers("viewer"))).status_code
            for _ in range(4)
        ]
        limited = await client.get("/auth/whoami", headers=headers("viewer"))
        other = await client.get("/auth/whoami", headers=headers("admin"))

    assert viewer == [200, 200, 200, 429]
    assert int(limited.headers["Retry-After"]) >= 1
    assert other.status_code == 200


async def test_failed_authentications_slow_down_the_address(prefix: str) -> None:
    settings = settings_for(prefix, api_auth_failures_per_minute=3)
    async with api_client(settings) as client:
        guesses = [
            (
                await client.get("/alerts", headers={"X-API-Key": f"guess-{i}"})
            ).status_code
            for i in range(4)
        ]
        real_key = await client.get("/alerts", headers=headers("viewer"))

    assert guesses == [401, 401, 401, 429]
    assert real_key.status_code == 429


async def test_body_over_the_limit_is_413(
    store: AlertStore, client: httpx.AsyncClient
) -> None:
    alert = make_alert(PATIENT, T0)
    await store.record_alert(alert)
    url = f"/alerts/{alert.alert_id}/acknowledge"
    big = b'{"note": "' + b"x" * 20_000 + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    declared = await client.post(
        url,
        content=big,
        headers={**headers("responder"), "Content-Type": "application/json"},
    )
    chunked = await client.post(
        url,
        content=chunks(),
        headers={**headers("responder"), "Content-Type": "application/json"},
    )
    status = await client.get(f"/alerts/{alert.alert_id}", headers=headers("viewer"))

    assert (declared.status_code, chunked.status_code) == (413, 413)
    assert status.json()["status"] == "open"


async def test_note_over_500_characters_is_422(
    store: AlertStore, client: httpx.AsyncClient
) -> None:
    alert = make_alert(PATIENT, T0)
    await store.record_alert(alert)

    response = await client.post(
        f"/alerts/{alert.alert_id}/acknowledge",
        json={"note": "n" * 501},
        headers=headers("responder"),
    )

    assert response.status_code == 422


async def test_cors_is_closed_unless_configured(prefix: str) -> None:
    preflight = {
        "Origin": "https://ward-display.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "x-api-key",
    }
    async with api_client(settings_for(prefix)) as client:
        closed = await client.options("/alerts", headers=preflight)
        simple = await client.get(
            "/alerts", headers={**headers("viewer"), "Origin": preflight["Origin"]}
        )
    opened_settings = settings_for(
        prefix, api_cors_origins=["https://ward-display.example"]
    )
    async with api_client(opened_settings) as client:
        opened = await client.options("/alerts", headers=preflight)

    assert "access-control-allow-origin" not in closed.headers
    assert "access-control-allow-origin" not in simple.headers
    assert opened.headers["access-control-allow-origin"] == preflight["Origin"]


async def test_pages_carry_security_headers(client: httpx.AsyncClient) -> None:
    root = await client.get("/")
    page = await client.get("/board/")
    script = await client.get("/board/board.js")

    assert root.status_code == 307
    assert root.headers["location"] == "/board/"
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert script.headers["content-type"].startswith("text/javascript")


async def test_patient_keys_stay_out_of_the_logs(
    store: AlertStore, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await store.record_score(make_score(PATIENT, T0, 0.5))
    await store.record_alert(make_alert(PATIENT, T0))
    caplog.set_level(logging.DEBUG)

    await client.get(f"/patients/{PATIENT}/risk", headers=headers("viewer"))
    await client.get("/patients/MRN-unknown-9/risk", headers=headers("viewer"))
    await client.get("/alerts", params={"patient": PATIENT}, headers=headers("viewer"))
    await client.get(f"/patients/{PATIENT}/risk", headers={"X-API-Key": "wrong"})

    ours = [r for r in caplog.records if r.name.startswith(("cxrwatch", "uvicorn"))]
    lines = [r.getMessage() for r in ours]
    assert any("GET /patients/{patient_key}/risk 200" in line for line in lines)
    assert not [line for line in lines if "MRN-" in line]
    assert not [line for line in lines if KEYS["viewer"] in line]


async def test_audit_trail_records_and_is_read_only(
    store: AlertStore, client: httpx.AsyncClient
) -> None:
    alert = make_alert(PATIENT, T0)
    await store.record_alert(alert)
    base = f"/alerts/{alert.alert_id}"
    await client.post(
        f"{base}/acknowledge", json={"note": "seen"}, headers=headers("responder")
    )
    resolved = await client.post(
        f"{base}/resolve", json={"note": "moved to ICU"}, headers=headers("admin")
    )
    again = await client.post(f"{base}/resolve", headers=headers("admin"))

    first = (await client.get("/audit?limit=1", headers=headers("admin"))).json()
    second = (
        await client.get(
            "/audit",
            params={"limit": 1, "before": first["next_cursor"]},
            headers=headers("admin"),
        )
    ).json()
    edits = [
        (await client.request(method, "/audit", headers=headers("admin"))).status_code
        for method in ("PUT", "PATCH", "DELETE", "POST")
    ]
    delete_alert = await client.delete(base, headers=headers("admin"))

    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["resolved"]["by"] == NAMES["admin"]
    assert resolved.json()["acknowledged"]["by"] == NAMES["responder"]
    assert again.status_code == 409
    assert [(e["action"], e["actor"], e["note"]) for e in first["items"]] == [
        ("resolved", NAMES["admin"], "moved to ICU")
    ]
    assert [(e["action"], e["actor"], e["note"]) for e in second["items"]] == [
        ("acknowledged", NAMES["responder"], "seen")
    ]
    assert second["next_cursor"] is None
    assert edits == [405, 405, 405, 405]
    assert delete_alert.status_code == 405


async def test_resolving_an_open_alert_skips_acknowledgement(
    store: AlertStore, client: httpx.AsyncClient
) -> None:
    alert = make_alert(PATIENT, T0)
    await store.record_alert(alert)
    base = f"/alerts/{alert.alert_id}"

    resolved = await client.post(f"{base}/resolve", headers=headers("responder"))
    acknowledge = await client.post(f"{base}/acknowledge", headers=headers("responder"))

    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["acknowledged"] is None
    assert acknowledge.status_code == 409
