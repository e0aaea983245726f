"""The alert rule on hand-worked sequences of scores.

Policy under test: band edges 0.3 / 0.6 / 0.85, alert from "high", hysteresis
0.05, rapid rise 0.2 within 24 h, cool-down 6 h.
"""

from datetime import UTC, datetime, timedelta

from cxrwatch.alerter.policy import AlertPolicy, PatientRisk, banded, decide

POLICY = AlertPolicy()
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def run(scores: list[tuple[float, float]]) -> list[str | None]:
    """Feed (hours after T0, p) pairs; return each decision's reason."""
    state: PatientRisk | None = None
    reasons = []
    for hours, p in scores:
        decision = decide(POLICY, state, p, T0 + timedelta(hours=hours), {})
        state = decision.state
        reasons.append(decision.reason)
    return reasons


def test_bands_without_history() -> None:
    assert [POLICY.band_of(p) for p in (0.0, 0.29, 0.3, 0.6, 0.849, 0.85, 1.0)] == [
        "low",
        "low",
        "moderate",
        "high",
        "high",
        "critical",
        "critical",
    ]


def test_low_to_high_raises_a_band_increase() -> None:
    assert run([(0, 0.1), (2, 0.65)]) == [None, "band-increase"]


def test_a_first_score_already_critical_alerts() -> None:
    assert run([(0, 0.9)]) == ["band-increase"]


def test_moderate_is_not_an_alerting_band_by_itself() -> None:
    # 0.1 -> 0.29 -> 0.45: rises of 0.19 and 0.16, band moderate: no alert.
    assert run([(0, 0.1), (1, 0.29), (2, 0.45)]) == [None, None, None]


def test_hysteresis_holds_the_band_at_a_boundary() -> None:
    # 0.58 is above 0.6 - 0.05, so the patient stays "high"; back at 0.62 there
    # is no new band increase, hence no second alert.
    assert banded(POLICY, 0.58, "high") == "high"
    assert run([(0, 0.1), (1, 0.65), (2, 0.58), (3, 0.62)]) == [
        None,
        "band-increase",
        None,
        None,
    ]


def test_falling_past_the_margin_drops_the_band() -> None:
    assert banded(POLICY, 0.54, "high") == "moderate"
    assert banded(POLICY, 0.2, "high") == "low"


def test_rapid_rise_within_the_window() -> None:
    # 0.32 -> 0.55 is +0.23 in 3 h, still moderate: a rapid rise.
    assert run([(0, 0.32), (3, 0.55)]) == [None, "rapid-rise"]


def test_a_rise_just_under_the_step_is_quiet() -> None:
    assert run([(0, 0.32), (3, 0.51)]) == [None, None]


def test_a_rise_outside_the_window_is_not_rapid() -> None:
    assert run([(0, 0.32), (30, 0.57)]) == [None, None]


def test_cool_down_stops_a_repeat_but_not_an_escalation() -> None:
    reasons = run(
        [
            (0, 0.1),
            (1, 0.7),  # high: alert
            (2, 0.4),  # back to moderate
            (3, 0.7),  # high again within 6 h of the last alert: quiet
            (4, 0.9),  # critical is above the alerted band: alert
        ]
    )
    assert reasons == [None, "band-increase", None, None, "band-increase"]


def test_after_the_cool_down_the_same_band_alerts_again() -> None:
    assert run([(0, 0.1), (1, 0.7), (2, 0.4), (8, 0.7)]) == [
        None,
        "band-increase",
        None,
        "band-increase",
    ]


def test_a_late_score_for_an_earlier_time_changes_nothing() -> None:
    first = decide(POLICY, None, 0.2, T0 + timedelta(hours=5), {})
    late = decide(POLICY, first.state, 0.95, T0 + timedelta(hours=1), {})
    assert late.reason is None
    assert late.state == first.state
