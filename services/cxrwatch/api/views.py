"""From what the alert store holds to the API's response models."""

from datetime import datetime

from cxrwatch.api.schemas import AlertView, LatestScore, RiskPoint, StatusChange
from cxrwatch.core.events import Alert, RiskScore


def _status_change(fields: dict[str, str], status: str) -> StatusChange | None:
    by = fields.get(f"{status}_by")
    at = fields.get(f"{status}_at")
    if not by or not at:
        return None
    note = fields.get(f"{status}_note") or None
    return StatusChange(by=by, at=datetime.fromisoformat(at), note=note)


def alert_view(fields: dict[str, str]) -> AlertView:
    """An alert hash (``alert`` JSON, ``status`` and who/when fields) as a view."""
    alert = Alert.model_validate_json(fields["alert"])
    return AlertView(
        **alert.model_dump(),
        status=fields.get("status", "open"),
        acknowledged=_status_change(fields, "acknowledged"),
        resolved=_status_change(fields, "resolved"),
    )


def risk_point(body: dict[str, object]) -> RiskPoint:
    """A stored score as a point of the risk history."""
    score = RiskScore.model_validate(body)
    return RiskPoint(**score.model_dump(include=set(RiskPoint.model_fields)))


def latest_score(body: dict[str, object]) -> LatestScore:
    """A stored latest score, with its patient."""
    score = RiskScore.model_validate(body)
    return LatestScore(**score.model_dump(include=set(LatestScore.model_fields)))
