"""Opaque pagination cursors: a position in the newest-first alert order.

A position is the raised time and id of the last alert a page examined.
Alerts raised at the same time are ordered by id (descending bytes, as Redis
orders equal scores), so a position is exact and a page never repeats or
skips an alert, whatever was recorded between two requests.
"""

import base64
import binascii
import json
import math
from dataclasses import dataclass


class BadCursor(ValueError):
    """A cursor this API did not issue."""


@dataclass(frozen=True)
class Position:
    """Where the previous page stopped."""

    raised_at: float
    alert_id: str

    def is_after(self, raised_at: float, alert_id: str) -> bool:
        """True when (raised_at, alert_id) comes after this position."""
        if raised_at != self.raised_at:
            return raised_at < self.raised_at
        return alert_id.encode() < self.alert_id.encode()

    def encode(self) -> str:
        """The cursor string handed to clients."""
        raw = json.dumps([self.raised_at, self.alert_id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> "Position":
        """Parse a cursor; raise :class:`BadCursor` when it is not one of ours."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            raised_at, alert_id = json.loads(raw)
        except (binascii.Error, ValueError, TypeError) as exc:
            raise BadCursor(f"cursor {cursor[:16]!r} is not valid") from exc
        if (
            not isinstance(raised_at, int | float)
            or isinstance(raised_at, bool)
            or not math.isfinite(raised_at)
            or not isinstance(alert_id, str)
        ):
            raise BadCursor(f"cursor {cursor[:16]!r} is not valid")
        return cls(float(raised_at), alert_id)
