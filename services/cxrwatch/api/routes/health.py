"""Liveness, readiness and Prometheus metrics.

``/healthz`` needs no credentials so an orchestrator can probe it; readiness
and metrics need a viewer, since they tell an outsider about the deployment.
"""

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from cxrwatch.api.dependencies import Store, Viewer
from cxrwatch.api.routes import AUTH_ERRORS
from cxrwatch.api.schemas import Liveness, Readiness
from cxrwatch.core.errors import DependencyUnavailable
from cxrwatch.core.metrics import READY

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Liveness, summary="Liveness")
async def healthz() -> Liveness:
    """200 while the process answers."""
    return Liveness()


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={**AUTH_ERRORS, 503: {"model": Readiness}},
    summary="Readiness: Redis answers",
)
async def readyz(_: Viewer, store: Store, response: Response) -> Readiness:
    """200 when Redis answers, 503 with the reason otherwise."""
    try:
        await store.ping()
    except DependencyUnavailable as exc:
        READY.labels("api").set(0)
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Readiness(ready=False, waiting_for={"redis": str(exc)})
    READY.labels("api").set(1)
    return Readiness(ready=True)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        **AUTH_ERRORS,
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Metrics."},
    },
    summary="Prometheus metrics",
)
async def metrics(_: Viewer) -> Response:
    """Counters and histograms in Prometheus' text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
