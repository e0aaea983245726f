"""Alerts: list and read them, acknowledge and resolve them.

Acknowledging and resolving record who (the authenticated principal), when
and an optional note on the alert, and append the same to the audit trail.
An alert goes open → acknowledged → resolved, or open → resolved.
"""

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, status

from cxrwatch.api.cursor import BadCursor, Position
from cxrwatch.api.dependencies import Responder, Settings, Store, Viewer
from cxrwatch.api.listing import AlertQuery, list_alerts
from cxrwatch.api.routes import AUTH_ERRORS, IsoTime, checked_range, invalid_query
from cxrwatch.api.schemas import (
    AlertPage,
    AlertStatus,
    AlertView,
    Band,
    Problem,
    StatusRequest,
)
from cxrwatch.api.views import alert_view
from cxrwatch.core.alertstore import TransitionRefused

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/alerts", tags=["alerts"], responses=AUTH_ERRORS)

AlertId = Annotated[
    str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "No alert with this id."}
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": Problem, "description": "The alert's status forbids it."}
}
NOT_JSON: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body is not JSON."}
}


@router.get("", response_model=AlertPage, summary="List alerts, newest first")
async def get_alerts(
    _: Viewer,
    store: Store,
    settings: Settings,
    patient: Annotated[
        str | None, Query(min_length=1, max_length=128, description="Patient key.")
    ] = None,
    band: Annotated[
        list[Band] | None, Query(description="Keep these bands (repeatable).")
    ] = None,
    alert_status: Annotated[
        list[AlertStatus] | None,
        Query(alias="status", description="Keep these statuses (repeatable)."),
    ] = None,
    since: Annotated[
        IsoTime | None, Query(description="Raised at or after (ISO 8601).")
    ] = None,
    until: Annotated[
        IsoTime | None, Query(description="Raised at or before (ISO 8601).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="Page size.")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of a page.")
    ] = None,
) -> AlertPage:
    """Alerts matching every filter given, newest first, one page at a time."""
    checked_range(since, until)
    try:
        after = Position.decode(cursor) if cursor else None
    except BadCursor as exc:
        raise invalid_query("cursor", str(exc)) from exc
    query = AlertQuery(
        patient_key=patient,
        bands=frozenset(band or ()),
        statuses=frozenset(alert_status or ()),
        since=since,
        until=until,
    )
    feed_id = await store.feed_position()
    page = await list_alerts(store, query, limit, after, settings.api_scan_budget)
    next_cursor = page.next_position.encode() if page.next_position else None
    return AlertPage(items=page.items, next_cursor=next_cursor, feed_id=feed_id)


@router.get(
    "/{alert_id}",
    response_model=AlertView,
    responses=NOT_FOUND,
    summary="One alert with what changed",
)
async def get_alert(alert_id: AlertId, _: Viewer, store: Store) -> AlertView:
    """The alert: previous and new risk, the inputs that moved, NEWS2, status."""
    fields = await store.get_alert(alert_id)
    if fields is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}")
    return alert_view(fields)


async def _transition(
    store: Store,
    alert_id: str,
    new_status: str,
    allowed_from: tuple[str, ...],
    actor: str,
    note: str | None,
) -> AlertView:
    try:
        fields = await store.transition(alert_id, new_status, allowed_from, actor, note)
    except TransitionRefused as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"alert {alert_id} is {exc.status}; cannot mark it {new_status}",
        ) from exc
    if fields is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no alert {alert_id}")
    logger.info("alert %s %s by %s", alert_id, new_status, actor)
    return alert_view(fields)


@router.post(
    "/{alert_id}/acknowledge",
    response_model=AlertView,
    responses={**NOT_FOUND, **CONFLICT, **NOT_JSON},
    summary="Acknowledge an open alert",
)
async def acknowledge(
    alert_id: AlertId,
    principal: Responder,
    store: Store,
    body: StatusRequest | None = None,
) -> AlertView:
    """Mark the alert acknowledged by the caller, with an optional note."""
    note = body.note if body else None
    return await _transition(
        store, alert_id, "acknowledged", ("open",), principal.name, note
    )


@router.post(
    "/{alert_id}/resolve",
    response_model=AlertView,
    responses={**NOT_FOUND, **CONFLICT, **NOT_JSON},
    summary="Resolve an open or acknowledged alert",
)
async def resolve(
    alert_id: AlertId,
    principal: Responder,
    store: Store,
    body: StatusRequest | None = None,
) -> AlertView:
    """Mark the alert resolved by the caller, with an optional note."""
    note = body.note if body else None
    return await _transition(
        store, alert_id, "resolved", ("open", "acknowledged"), principal.name, note
    )
