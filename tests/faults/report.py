"""One row per fault case, and the table the suite prints at the end."""

from dataclasses import dataclass, field

RESULTS: list["CaseResult"] = []
"""Every case run in this session, in order; the terminal summary prints them."""


@dataclass
class CaseResult:
    """What one case found, against what the oracle expects."""

    case: str
    expected_alerts: int
    found_alerts: int = 0
    missing_alerts: int = 0
    unexpected_alerts: int = 0
    api_duplicates: int = 0
    topic_duplicates: int = 0
    redelivered: int = 0  # repeated ids on the services' output topics
    expected_dead_letters: int = 0
    dead_letters: int = 0
    lag_at_strike: int | None = None
    recovery_s: float | None = None
    runtime_s: float = 0.0
    not_ready: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True when nothing was found wrong."""
        return not self.problems


HEADER = (
    "case",
    "alerts expected",
    "found",
    "dup API",
    "dup topic",
    "dead letters",
    "redelivered",
    "lag at fault",
    "recovery s",
    "not ready",
    "runtime s",
    "result",
)


def row(result: CaseResult) -> tuple[str, ...]:
    """A result as table cells."""
    return (
        result.case,
        str(result.expected_alerts),
        str(result.found_alerts),
        str(result.api_duplicates),
        str(result.topic_duplicates),
        f"{result.dead_letters}/{result.expected_dead_letters}",
        str(result.redelivered),
        "-" if result.lag_at_strike is None else str(result.lag_at_strike),
        "-" if result.recovery_s is None else f"{result.recovery_s:.1f}",
        ",".join(result.not_ready) or "-",
        f"{result.runtime_s:.0f}",
        "pass" if result.passed else "FAIL",
    )


def markdown_table(results: list[CaseResult]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join("---" for _ in HEADER) + "|",
    ]
    lines += ["| " + " | ".join(row(r)) + " |" for r in results]
    return "\n".join(lines)


def text_table(results: list[CaseResult]) -> str:
    """The results as an aligned plain-text table."""
    rows = [HEADER, *(row(r) for r in results)]
    widths = [max(len(cells[i]) for cells in rows) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        for cells in rows
    )
