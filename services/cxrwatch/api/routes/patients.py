"""Patients: the latest score of each, and one patient's risk over time.

Patient keys travel in the path (``/patients/{patient_key}/risk``); the access
log writes the route template, never the path, so no key reaches a log line.
"""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from cxrwatch.api.dependencies import Settings, Store, Viewer
from cxrwatch.api.routes import AUTH_ERRORS, IsoTime, checked_range
from cxrwatch.api.schemas import LatestScores, Problem, RiskHistory
from cxrwatch.api.views import latest_score, risk_point

router = APIRouter(prefix="/patients", tags=["patients"], responses=AUTH_ERRORS)


@router.get("/latest", response_model=LatestScores, summary="Latest score per patient")
async def get_latest(
    _: Viewer,
    store: Store,
    limit: Annotated[int, Query(ge=1, le=5000, description="Most patients.")] = 500,
) -> LatestScores:
    """Each patient's most recent score, highest probability first."""
    scores = [latest_score(body) for body in (await store.latest_scores()).values()]
    scores.sort(key=lambda s: (-s.p_critical, s.patient_key))
    return LatestScores(items=scores[:limit])


@router.get(
    "/{patient_key:path}/risk",
    response_model=RiskHistory,
    responses={404: {"model": Problem, "description": "No score for this patient."}},
    summary="A patient's risk history",
)
async def get_risk(
    patient_key: Annotated[str, Path(min_length=1, max_length=128)],
    _: Viewer,
    store: Store,
    settings: Settings,
    since: Annotated[
        IsoTime | None, Query(description="Scores as of this time or later.")
    ] = None,
    until: Annotated[
        IsoTime | None, Query(description="Scores as of this time or earlier.")
    ] = None,
) -> RiskHistory:
    """Scores in the time range, oldest first, with the inputs behind each."""
    checked_range(since, until)
    bodies = await store.risk_history(
        patient_key, _bound(since, float("-inf")), _bound(until, float("inf"))
    )
    if not bodies and await store.latest_score(patient_key) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no score for this patient")
    return RiskHistory(
        patient_key=patient_key,
        band_thresholds=settings.band_thresholds,
        points=[risk_point(body) for body in bodies],
    )


def _bound(moment: datetime | None, default: float) -> float:
    return moment.timestamp() if moment else default
