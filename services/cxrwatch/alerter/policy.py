"""When a change of risk becomes an alert: bands, hysteresis, rise and cool-down.

A score's band is where its probability falls among the thresholds. Moving up
takes effect at once; moving down only once the probability is ``hysteresis``
below the band's lower edge, so a patient hovering at a boundary does not flap.
An alert is raised when the band rises into an alerting band
(``band-increase``), or when the probability rises by ``rise_step`` or more
within ``rise_window`` while at least moderate (``rapid-rise``). After an
alert, nothing at the same or a lower band is raised for ``cool_down``.
A score older than the last one considered (late data) changes nothing.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel

Band = Literal["low", "moderate", "high", "critical"]
BANDS: tuple[Band, ...] = ("low", "moderate", "high", "critical")


@dataclass(frozen=True)
class AlertPolicy:
    """Thresholds and timings of the alert rule."""

    thresholds: tuple[float, float, float] = (0.3, 0.6, 0.85)
    alert_from: Band = "high"
    hysteresis: float = 0.05
    rise_step: float = 0.2
    rise_window: timedelta = timedelta(hours=24)
    cool_down: timedelta = timedelta(hours=6)

    def lower_edge(self, band: Band) -> float:
        """The smallest probability in ``band``."""
        index = BANDS.index(band)
        return 0.0 if index == 0 else self.thresholds[index - 1]

    def band_of(self, p: float) -> Band:
        """The band of a probability, without history."""
        return BANDS[sum(p >= t for t in self.thresholds)]


class PatientRisk(BaseModel):
    """What the alerter remembers of a patient."""

    band: Band
    p_critical: float
    as_of: datetime
    clinical_values: dict[str, float | None]
    last_alert_at: datetime | None = None
    last_alert_band: Band | None = None


@dataclass(frozen=True)
class Decision:
    """The new state, and the reason for an alert if one is due."""

    state: PatientRisk
    reason: Literal["band-increase", "rapid-rise"] | None
    previous: PatientRisk | None


def banded(policy: AlertPolicy, p: float, previous: Band | None) -> Band:
    """The band of ``p``, held up by hysteresis when falling from ``previous``."""
    raw = policy.band_of(p)
    if previous is None or BANDS.index(raw) >= BANDS.index(previous):
        return raw
    if p >= policy.lower_edge(previous) - policy.hysteresis:
        return previous
    return policy.band_of(p + policy.hysteresis)


def decide(
    policy: AlertPolicy,
    previous: PatientRisk | None,
    p_critical: float,
    as_of: datetime,
    clinical_values: dict[str, float | None],
) -> Decision:
    """Apply the rule to one score."""
    if previous is not None and as_of < previous.as_of:
        return Decision(state=previous, reason=None, previous=previous)
    band = banded(policy, p_critical, previous.band if previous else None)
    state = PatientRisk(
        band=band,
        p_critical=p_critical,
        as_of=as_of,
        clinical_values=clinical_values,
        last_alert_at=previous.last_alert_at if previous else None,
        last_alert_band=previous.last_alert_band if previous else None,
    )
    reason = _reason(policy, previous, state)
    if reason is not None:
        state = state.model_copy(
            update={"last_alert_at": as_of, "last_alert_band": band}
        )
    return Decision(state=state, reason=reason, previous=previous)


def _reason(
    policy: AlertPolicy, previous: PatientRisk | None, current: PatientRisk
) -> Literal["band-increase", "rapid-rise"] | None:
    rank = BANDS.index(current.band)
    if _cooling_down(policy, previous, current):
        return None
    before = BANDS.index(previous.band) if previous else 0
    if rank > before and rank >= BANDS.index(policy.alert_from):
        return "band-increase"
    if (
        previous is not None
        and rank >= BANDS.index("moderate")
        and current.as_of - previous.as_of <= policy.rise_window
        and current.p_critical - previous.p_critical >= policy.rise_step
    ):
        return "rapid-rise"
    return None


def _cooling_down(
    policy: AlertPolicy, previous: PatientRisk | None, current: PatientRisk
) -> bool:
    if previous is None or previous.last_alert_at is None:
        return False
    recent = current.as_of - previous.last_alert_at < policy.cool_down
    last_band = previous.last_alert_band or "low"
    return recent and BANDS.index(current.band) <= BANDS.index(last_band)
