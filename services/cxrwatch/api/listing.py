"""The alert listing: walk the time index newest first, filter, cut a page.

Band and status are not indexed, so a page is filled by examining index
entries in order until it holds ``limit`` matching alerts and one more match
proves there is a next page. A listing examines at most ``scan_budget``
entries; when the budget runs out first, the page may be short and its cursor
points at the last entry examined, so the next request carries on from there.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

from cxrwatch.api.cursor import Position
from cxrwatch.api.schemas import AlertView
from cxrwatch.api.views import alert_view
from cxrwatch.core.alertstore import AlertStore

logger = logging.getLogger(__name__)

_CHUNK = 100


@dataclass(frozen=True)
class AlertQuery:
    """Filters of a listing; None or empty means any."""

    patient_key: str | None = None
    bands: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, view: AlertView) -> bool:
        """True when the alert passes the band and status filters."""
        if self.bands and view.band not in self.bands:
            return False
        return not self.statuses or view.status in self.statuses


@dataclass(frozen=True)
class Page:
    """A page of alerts and where the next one starts."""

    items: list[AlertView]
    next_position: Position | None


async def list_alerts(
    store: AlertStore,
    query: AlertQuery,
    limit: int,
    after: Position | None,
    scan_budget: int,
) -> Page:
    """The first ``limit`` alerts matching ``query`` after ``after``."""
    newest = _bound(query.until, float("inf"))
    if after is not None:
        newest = min(newest, after.raised_at)
    oldest = _bound(query.since, float("-inf"))
    items: list[AlertView] = []
    last: Position | None = None
    offset = examined = 0
    while examined < scan_budget:
        chunk = await store.alert_ids(
            query.patient_key, newest, oldest, limit=_CHUNK, offset=offset
        )
        if not chunk:
            return Page(items, None)
        offset += len(chunk)
        fresh = [(i, s) for i, s in chunk if after is None or after.is_after(s, i)]
        fresh = fresh[: scan_budget - examined]
        stored = await store.get_alerts([alert_id for alert_id, _ in fresh])
        for (alert_id, raised_at), fields in zip(fresh, stored, strict=True):
            examined += 1
            view = alert_view(fields) if fields else None
            if view is None or not query.matches(view):
                last = Position(raised_at, alert_id)
                continue
            if len(items) == limit:
                return Page(items, last)
            items.append(view)
            last = Position(raised_at, alert_id)
    logger.info("alert listing stopped after examining %d index entries", examined)
    return Page(items, last)


def _bound(moment: datetime | None, default: float) -> float:
    return moment.timestamp() if moment else default
