"""Sex and birth date: the demographic inputs, from whichever code the sender used.

Sex is stored as ``M``, ``F`` or ``O`` (the model reads 1.0 for male, 0.0 for
female and nothing otherwise); unknown, not applicable and unrecognised codes
leave it unknown. Accepted: FHIR administrative gender (``male``, ``female``,
``other``, ``unknown``), HL7 table 0001 (``M``, ``F``, ``O``, ``A``, ``N``,
``U``), the LOINC answers ``LA2-8`` (male) and ``LA3-6`` (female) and the
SNOMED CT findings 248153007 (male) and 248152002 (female).

A birth date after the day of the message (or today) is impossible and
refused; the refusal does not repeat it, as a birth date helps say who a
person is.
"""

from datetime import date

from cxrwatch.core.errors import InvalidInput
from cxrwatch.core.observations import Sex

_SEX_CODES: dict[str, Sex | None] = {
    "male": "M",
    "m": "M",
    "la2-8": "M",
    "248153007": "M",
    "female": "F",
    "f": "F",
    "la3-6": "F",
    "248152002": "F",
    "other": "O",
    "o": "O",
    "a": "O",
    "unknown": None,
    "u": None,
    "n": None,
    "unk": None,
}

SEX_VALUES: dict[Sex, float | None] = {"M": 1.0, "F": 0.0, "O": None}


def sex_from_code(code: str) -> Sex | None:
    """Return ``M``, ``F``, ``O``, or ``None`` for unknown or unrecognised codes."""
    return _SEX_CODES.get(code.strip().lower())


def is_sex_code(code: str) -> bool:
    """True when the code is one of the recognised sex codes, known or unknown."""
    return code.strip().lower() in _SEX_CODES


def birth_date_from_text(text: str, what: str) -> date | None:
    """Read a birth date given as ``YYYY-MM-DD`` or ``YYYYMMDD[...]``.

    A birth date with only a year or a month is read as unknown: an age that
    may be wrong by a year is worse than an age the model knows is missing.

    Raises
    ------
    InvalidInput
        If the text is not a date.
    """
    digits = text.strip().replace("-", "")[:8]
    if not digits:
        return None
    if not digits.isdigit():
        raise InvalidInput(f"{what} {text!r} is not a date")
    if len(digits) < 8:
        return None
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError as exc:
        raise InvalidInput(f"{what} {text!r} is not a valid date") from exc


def check_birth_date(born: date | None, latest: date, what: str) -> None:
    """Refuse a birth date after ``latest``, the day of the message: the day it
    was sent, or today when it arrives sooner or says nothing of when.

    Raises
    ------
    InvalidInput
        If ``born`` is after ``latest``; the reason does not show ``born``.
    """
    if born is not None and born > latest:
        raise InvalidInput(
            f"{what} is after {latest.isoformat()}, the day of the message: "
            "nobody is born later than that (the date is not shown)"
        )
