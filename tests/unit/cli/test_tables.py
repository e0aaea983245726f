"""The command line's tables: full times in UTC, the alert's status, long
reasons cut with an ellipsis."""

from datetime import datetime, timedelta, timezone

from cxrwatch.cli.tables import console, print_alerts, print_dead_letters
from cxrwatch.core.events import DeadLetter


def _alert(status: str, raised_at: str) -> dict[str, object]:
    return {
        "raised_at": raised_at,
        "patient_key": "p-1",
        "band": "high",
        "status": status,
        "reason": "band-up",
        "p_critical": 0.71,
        "previous_p_critical": 0.32,
        "news2": {"score": 7},
        "changes": [{"feature": "spo2"}],
    }


def test_an_alert_row_has_its_status_and_a_utc_time() -> None:
    # 14:05 at UTC-05:00 is 19:05 UTC.
    body = {"items": [_alert("resolved", "2026-12-04T14:05:09-05:00")]}

    with console.capture() as captured:
        print_alerts(body)

    row = next(line for line in captured.get().splitlines() if "p-1" in line)
    assert "2026-12-04 19:05:09Z" in row
    assert "resolved" in row
    assert "0.32→0.71" in row


def test_a_long_reason_ends_in_an_ellipsis() -> None:
    reason = "accepted units: " + ", ".join(f"unit-{n}" for n in range(100))
    letter = DeadLetter(
        dead_letter_id="d-1",
        service="clinical",
        error_class="InvalidInput",
        error_message=reason,
        source_topic="ehr.observations.v1",
        source_partition=1,
        source_offset=7,
        source_headers={},
        source_value="",
        failed_at=datetime(2026, 12, 4, 23, 30, tzinfo=timezone(timedelta(hours=2))),
    )

    with console.capture() as captured:
        print_dead_letters([letter])

    text = "".join(captured.get().split())  # the table wraps the reason
    assert "2026-12-0421:30:00Z" in text
    # 400 characters reach unit-42; the rest is cut, with a mark.
    assert "unit-40" in text
    assert "unit-99" not in text
    assert "…" in text
