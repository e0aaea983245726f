"""Schemathesis over the API's OpenAPI document, against a running server.

Every documented operation gets generated valid and invalid requests (a
bounded number each) as an admin; the run must meet no server error and no
answer outside the documented status codes and schemas. The live stream is
left out: its body never ends, and its own tests cover it.

The "schema-valid request accepted" check is off: a cursor is opaque (any
string fits its schema, only ours decode) and ``since`` after ``until`` fits
the schema too; both are rightly answered 422.
"""

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import pytest
import schemathesis
from cxrwatch.api.app import create_app
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.specs.openapi.checks import positive_data_acceptance
from test_api_world import (
    T0,
    delete_prefix,
    headers,
    make_alert,
    make_score,
    new_prefix,
    serving_in_thread,
    settings_for,
    store_on,
)

pytestmark = pytest.mark.integration

PREFIX = new_prefix()
SETTINGS = settings_for(
    PREFIX,
    api_rate_per_minute=1_000_000,
    api_rate_burst=1_000_000,
    api_auth_failures_per_minute=1_000_000,
)
schema = schemathesis.openapi.from_dict(create_app(SETTINGS).openapi()).exclude(
    path="/alerts/stream"
)


async def _seed() -> None:
    async with store_on(PREFIX) as store:
        for hour in range(3):
            at = T0 + timedelta(hours=hour)
            await store.record_score(make_score("MRN-SCHEMA-1", at, 0.3 + hour / 5))
            await store.record_alert(make_alert("MRN-SCHEMA-1", at))


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    asyncio.run(_seed())
    try:
        with serving_in_thread(SETTINGS) as url:
            yield url
    finally:
        asyncio.run(delete_prefix(PREFIX))


@schema.parametrize()
@hypothesis_settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_no_server_error_and_answers_as_documented(
    case: schemathesis.Case, base_url: str
) -> None:
    case.call_and_validate(
        base_url=base_url,
        headers=headers("admin"),
        timeout=10,
        excluded_checks=[positive_data_acceptance],
    )
