"""One access-log line and request metrics per request, without patient keys.

The line names the route template (``/patients/{patient_key}/risk``), never
the requested path or query string: paths and queries may hold patient keys
and stream tokens. Requests that match no route are logged as ``<unmatched>``.
Uvicorn's own access log is switched off in favour of this one.
"""

import logging
import re
import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

_CONVERTOR = re.compile(r"\{(\w+):\w+\}")

REQUESTS = Counter(
    "cxrwatch_api_requests_total",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "cxrwatch_api_request_seconds",
    "Time to answer a request (a live stream: its whole life), by route.",
    ["route"],
)


def route_template(scope: Scope) -> str:
    """The template of the route that served ``scope``, or ``<unmatched>``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return "<unmatched>"
    return _CONVERTOR.sub(r"{\1}", path)


class AccessLog:
    """ASGI middleware writing ``method route status ms principal``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            principal = scope.get("state", {}).get("principal")
            who = f"{principal.via}:{principal.name}" if principal else "-"
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(route).observe(elapsed)
            logger.info(
                "%s %s %d %.1fms %s",
                scope["method"],
                route,
                status,
                elapsed * 1000,
                who,
            )
