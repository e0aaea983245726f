"""The live alert feed as Server-Sent Events: ``GET /alerts/stream``.

Each new alert is one event whose ``id:`` is the Redis stream entry id of the
feed (``<p>:alerts:feed``), ``event: alert`` and ``data:`` the alert as
``GET /alerts/{id}`` returns it. A client that reconnects sends the last id
it saw (``Last-Event-ID`` header, which ``EventSource`` sends by itself, or
the ``last_event_id`` query parameter) and gets exactly the alerts after it.
Without one it starts at the newest entry: pass ``feed_id`` from
``GET /alerts`` to miss nothing between a listing and the stream.

When the feed was trimmed past the client's position an ``event: reset``
comes first: reload the list. A comment line every heartbeat keeps proxies
from closing an idle connection. The stream stops its Redis reads as soon as
the client disconnects, and ends when its stream token expires (the page then
fetches a new token and resumes from its last id).
"""

import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from prometheus_client import Gauge
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from cxrwatch.api.dependencies import Settings, StreamStore, StreamViewer
from cxrwatch.api.routes import AUTH_ERRORS, invalid_query
from cxrwatch.api.views import alert_view
from cxrwatch.core.alertstore import AlertStore

logger = logging.getLogger(__name__)

router = APIRouter(tags=["alerts"], responses=AUTH_ERRORS)

STREAMS = Gauge("cxrwatch_api_streams", "Live alert streams open now.")

_ENTRY_ID = re.compile(r"\d{1,20}(-\d{1,20})?")
_BATCH = 100


class StreamSlots:
    """How many streams are open, against the configured most."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0


class EventStream(StreamingResponse):
    """A streaming response that stops producing when the client goes away.

    Starlette notices a disconnect only on the next write under newer ASGI
    servers; an idle feed would keep reading Redis until the heartbeat. This
    response also listens for ``http.disconnect`` and cancels at once.
    """

    media_type = "text/event-stream"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as group:

            async def produce() -> None:
                try:
                    await self.stream_response(send)
                except OSError:
                    logger.info("stream client went away during a write")
                group.cancel_scope.cancel()

            group.start_soon(produce)
            await self.listen_for_disconnect(receive)
            group.cancel_scope.cancel()


def _event(entry_id: str, payload: str) -> str:
    return f"id: {entry_id}\nevent: alert\ndata: {payload}\n\n"


async def _feed(
    store: AlertStore,
    slots: StreamSlots,
    after: str,
    heartbeat_s: float,
    ends_at: float,
) -> AsyncIterator[str]:
    slots.open += 1
    STREAMS.inc()
    sent = 0
    try:
        yield "retry: 3000\n\n"
        if await store.feed_lost_after(after):
            yield "event: reset\ndata: {}\n\n"
        while time.time() < ends_at:
            block_s = min(heartbeat_s, max(0.001, ends_at - time.time()))
            entries = await store.read_feed(after, _BATCH, int(block_s * 1000))
            if not entries:
                yield ": keep-alive\n\n"
                continue
            stored = await store.get_alerts([alert_id for _, alert_id in entries])
            for (entry_id, _), fields in zip(entries, stored, strict=True):
                after = entry_id
                if fields is not None:
                    sent += 1
                    yield _event(entry_id, alert_view(fields).model_dump_json())
    finally:
        slots.open -= 1
        STREAMS.dec()
        logger.info("alert stream closed after %d event(s)", sent)


@router.get(
    "/alerts/stream",
    response_class=EventStream,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "One ``alert`` event per new alert.",
        },
    },
    summary="Live feed of new alerts (Server-Sent Events)",
)
async def alert_stream(
    request: Request,
    _: StreamViewer,
    store: StreamStore,
    settings: Settings,
    last_event_id_header: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="Resume after this entry id."),
    ] = None,
    last_event_id: Annotated[
        str | None,
        Query(description="Resume after this entry id (when no header)."),
    ] = None,
) -> EventStream:
    """New alerts as they are raised, resumable from the last event id."""
    resume = last_event_id_header or last_event_id
    if resume is not None and not _ENTRY_ID.fullmatch(resume):
        raise invalid_query("last_event_id", f"{resume[:40]!r} is not a feed entry id")
    slots: StreamSlots = request.app.state.stream_slots
    if slots.open >= slots.limit:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail="too many live streams open "
            f"(CXRWATCH_API_STREAM_MAX_CLIENTS={slots.limit})",
            headers={"Retry-After": "10"},
        )
    after = resume or await store.feed_position()
    ends_at = getattr(request.state, "stream_token_expires", float("inf"))
    return EventStream(
        _feed(store, slots, after, settings.api_stream_heartbeat_s, ends_at),
        headers={"X-Accel-Buffering": "no"},
    )
