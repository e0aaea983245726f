"""``cxrwatch dead-letters --since``: a time ago or an ISO 8601 time."""

from datetime import UTC, datetime, timedelta

import pytest
import typer
from cxrwatch.cli.main import since_time


@pytest.mark.parametrize(
    ("text", "ago"),
    [
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("1.5h", timedelta(minutes=90)),
        ("2d", timedelta(hours=48)),
    ],
)
def test_a_time_ago(text, ago):
    before = datetime.now(UTC)
    since = since_time(text)
    after = datetime.now(UTC)
    assert before - ago <= since <= after - ago


def test_an_iso_time_with_an_offset():
    since = since_time("2026-01-31T14:05:00+01:00")
    assert since == datetime(2026, 1, 31, 13, 5, tzinfo=UTC)


def test_an_iso_time_without_an_offset_is_local():
    local = datetime(2026, 1, 31, 14, 5).astimezone()
    assert since_time("2026-01-31T14:05") == local


@pytest.mark.parametrize("text", ["yesterday", "10 min", "-5m", "5w", ""])
def test_anything_else_is_refused(text):
    with pytest.raises(typer.BadParameter, match="neither a time ago"):
        since_time(text)
