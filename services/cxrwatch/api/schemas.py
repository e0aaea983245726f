"""Response models of the API: what a client reads, documented in OpenAPI.

They are built from the stored :class:`~cxrwatch.core.events.Alert` and
:class:`~cxrwatch.core.events.RiskScore` JSON plus the alert's status fields,
so a change to an event model shows up here as a validation error in tests.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from cxrwatch.core.events import FeatureChange, News2

Band = Literal["low", "moderate", "high", "critical"]
AlertStatus = Literal["open", "acknowledged", "resolved"]


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


class StatusChange(_Response):
    """Who acknowledged or resolved an alert, when, and why."""

    by: str = Field(description="Name of the authenticated principal.")
    at: datetime
    note: str | None = None


class AlertView(_Response):
    """An alert with what changed and where it stands."""

    alert_id: str
    patient_key: str
    score_id: str
    radiograph_id: str
    raised_at: datetime
    reason: Literal["band-increase", "rapid-rise"]
    band: Band
    previous_band: Band | None
    p_critical: float = Field(description="New probability of critical illness.")
    previous_p_critical: float | None
    progression_risk: float = Field(description="Log-hazard of progression.")
    changes: list[FeatureChange] = Field(
        description="The clinical inputs that moved most since the previous score."
    )
    news2: News2
    model_name: str
    model_version: str
    status: AlertStatus
    acknowledged: StatusChange | None = None
    resolved: StatusChange | None = None


class AlertPage(_Response):
    """One page of alerts, newest first."""

    items: list[AlertView]
    next_cursor: str | None = Field(
        description="Pass as ``cursor`` for the next page; null on the last page."
    )
    feed_id: str = Field(
        description="Live-feed position read before this page: open "
        "/alerts/stream with it as Last-Event-ID to miss nothing raised since."
    )


class StatusRequest(BaseModel):
    """Body of an acknowledgement or a resolution."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(None, max_length=500)


class RiskPoint(_Response):
    """One score of a patient: the model's output and the inputs behind it."""

    score_id: str
    radiograph_id: str
    acquired_at: datetime = Field(description="When the radiograph was taken.")
    as_of: datetime = Field(description="Time the clinical values were taken at.")
    p_critical: float
    progression_risk: float
    clinical_values: dict[str, float | None]
    news2: News2
    model_name: str
    model_version: str


class RiskHistory(_Response):
    """A patient's risk over a time range, oldest first."""

    patient_key: str
    band_thresholds: tuple[float, float, float] = Field(
        description="Lower edges of moderate, high and critical."
    )
    points: list[RiskPoint]


class LatestScore(RiskPoint):
    """The most recent score of one patient."""

    patient_key: str


class LatestScores(_Response):
    """The latest score of every patient, highest risk first."""

    items: list[LatestScore]


class Liveness(_Response):
    """The process answers."""

    status: Literal["ok"] = "ok"


class Readiness(_Response):
    """Whether the API can serve data, and what it waits for if not."""

    ready: bool
    waiting_for: dict[str, str] = Field(default_factory=dict)


class Problem(_Response):
    """An error, as FastAPI reports it."""

    detail: str
