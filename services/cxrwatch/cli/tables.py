"""The command line's tables: alerts from the API, letters from deadletter.v1."""

import sys
from collections.abc import Sequence
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from cxrwatch.core.events import DeadLetter

# Wide enough for the tables when the output is a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 120)

REASON_CHARS = 400
"""Longest reason a dead-letter row shows; the whole one is on the topic."""


def utc_text(moment: datetime) -> str:
    """``2026-12-04 21:43:52Z``: the date, the time, and that it is UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def shortened(text: str, limit: int) -> str:
    """``text``, or its start and an ellipsis when it is longer than ``limit``."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_alerts(body: object) -> None:
    """Render an /alerts response as a table, oldest first."""
    items = body.get("items", []) if isinstance(body, dict) else []
    table = Table(title=f"{len(items)} alert(s)")
    for column in ("raised at", "patient", "band", "status", "reason", "risk", "NEWS2"):
        table.add_column(column, no_wrap=True)
    table.add_column("moved most")
    for alert in reversed(items):
        previous = alert.get("previous_p_critical")
        risk = f"{previous:.2f}→" if previous is not None else ""
        table.add_row(
            utc_text(datetime.fromisoformat(alert["raised_at"])),
            alert["patient_key"],
            alert["band"],
            alert.get("status", ""),
            alert["reason"],
            risk + f"{alert['p_critical']:.2f}",
            str(alert.get("news2", {}).get("score")),
            ", ".join(c["feature"] for c in alert.get("changes", [])),
        )
    console.print(table)


def print_dead_letters(letters: Sequence[DeadLetter]) -> None:
    """What went to the dead-letter topic, and why."""
    table = Table(title=f"{len(letters)} dead letter(s)")
    for column in ("failed at", "service", "source", "error"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", overflow="fold")
    for letter in letters:
        table.add_row(
            utc_text(letter.failed_at),
            letter.service,
            f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}",
            letter.error_class,
            shortened(letter.error_message, REASON_CHARS),
        )
    console.print(table)
