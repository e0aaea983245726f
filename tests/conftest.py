"""Fixtures shared by the test suites: real servers on loopback."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.servers import REPO, tansu

OUTPUT = REPO / "test-output"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A real Kafka-protocol broker (Tansu) for the whole session."""
    with tansu(OUTPUT / "logs") as bootstrap:
        yield bootstrap


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis the machine runs (CXRWATCH_TEST_REDIS_URL to override)."""
    url = os.environ.get("CXRWATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        raise RuntimeError(
            f"the tests need a Redis at {url}; start redis-server or set "
            "CXRWATCH_TEST_REDIS_URL"
        ) from exc
    finally:
        client.close()
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"cxrtest-{uuid.uuid4().hex[:10]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """A folder for what a test leaves behind (logs, screenshots)."""
    folder = OUTPUT / request.node.name
    folder.mkdir(parents=True, exist_ok=True)
    return folder
