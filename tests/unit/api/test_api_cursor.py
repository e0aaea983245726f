"""Pagination cursors: round trip, order of positions, refusal of forgeries."""

import pytest
from cxrwatch.api.cursor import BadCursor, Position


def test_round_trip_keeps_the_exact_time() -> None:
    position = Position(1773475200.123456, "c0ffee00-0000-5000-8000-000000000001")

    assert Position.decode(position.encode()) == position


def test_later_entries_are_older_or_smaller_ids_at_the_same_time() -> None:
    position = Position(100.0, "m")

    assert position.is_after(99.5, "z")
    assert position.is_after(100.0, "a")
    assert not position.is_after(100.0, "m")
    assert not position.is_after(100.0, "n")
    assert not position.is_after(100.5, "a")


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "%%%",
        "bm90IGpzb24",
        "WzEsMiwzXQ",
        "WyJ4IiwieSJd",
        "WzEuMCw1XQ",
        "WyJOYU4iLCJhIl0",
    ],
)
def test_forged_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(BadCursor):
        Position.decode(cursor)
