"""Liveness, readiness and metrics over a minimal HTTP endpoint.

``GET /healthz`` answers 200 while the process runs; ``GET /readyz`` answers 200
only while every dependency is up (503 with the reasons otherwise);
``GET /metrics`` serves Prometheus' text format.
"""

import asyncio
import json
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cxrwatch.core.metrics import READY

logger = logging.getLogger(__name__)


class Health:
    """Readiness as the set of reasons the service is not ready."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._reasons: dict[str, str] = {"broker": "not connected yet"}
        READY.labels(service).set(0)

    @property
    def ready(self) -> bool:
        """True when no dependency is down."""
        return not self._reasons

    @property
    def reasons(self) -> dict[str, str]:
        """Why the service is not ready, by dependency."""
        return dict(self._reasons)

    def set_ready(self, dependency: str) -> None:
        """Mark a dependency as up."""
        self._reasons.pop(dependency, None)
        READY.labels(self.service).set(1 if self.ready else 0)

    def set_not_ready(self, dependency: str, reason: str) -> None:
        """Mark a dependency as down, with why."""
        self._reasons[dependency] = reason
        READY.labels(self.service).set(0)


async def serve_health(health: Health, port: int, host: str) -> asyncio.Server | None:
    """Serve the health endpoints on ``host:port``; port ``0`` serves nothing."""
    if port == 0:
        return None

    async def answer(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            request_line = await asyncio.wait_for(reader.readline(), timeout=5)
            path = request_line.decode("latin-1").split(" ")[1:2] or ["/"]
            status, content_type, body = _respond(health, path[0])
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError) as exc:
            logger.debug("health request dropped: %s", exc)
        finally:
            writer.close()

    server = await asyncio.start_server(answer, host, port)
    logger.info("health endpoints on %s port %d", host, port)
    return server


def _respond(health: Health, path: str) -> tuple[str, str, bytes]:
    if path == "/healthz":
        return "200 OK", "text/plain", b"ok\n"
    if path == "/readyz":
        body = json.dumps({"ready": health.ready, "waiting_for": health.reasons})
        status = "200 OK" if health.ready else "503 Service Unavailable"
        return status, "application/json", body.encode()
    if path == "/metrics":
        return "200 OK", CONTENT_TYPE_LATEST, generate_latest()
    return "404 Not Found", "text/plain", b"not found\n"
