"""Units of measure: each feature's canonical UCUM unit and the conversions into it.

The manifest names the canonical unit of every feature; a value arrives in
whatever unit the sender used. A unit is recognised as a UCUM code (exactly,
then ignoring case) or as one of the common spellings below (``mmHg``,
``degF``, ``x10*9/L``, ``cells/uL``); anything else, and a value with no unit,
is refused: a number is never stored as if it were already canonical.

A percentage between 0 and 1 (an SpO2 of ``0.91 %``) is refused as ambiguous:
it is almost certainly a fraction sent with the wrong unit, and reading it
either way could be wrong. A fraction must come with the unit ``1``.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from cxrwatch.core.errors import InvalidInput


@dataclass(frozen=True)
class Linear:
    """canonical = value * scale + shift."""

    scale: float = 1.0
    shift: float = 0.0

    def __call__(self, value: float) -> float:
        return value * self.scale + self.shift


SAME = Linear()

# canonical unit → {UCUM unit of the source → conversion into the canonical unit}
CONVERSIONS: Mapping[str, Mapping[str, Linear]] = {
    "%": {"%": SAME, "1": Linear(100.0)},
    "/min": {
        "/min": SAME,
        "1/min": SAME,
        "{beats}/min": SAME,
        "{breaths}/min": SAME,
    },
    "Cel": {
        "Cel": SAME,
        "[degF]": Linear(5 / 9, -160 / 9),
        "K": Linear(1.0, -273.15),
    },
    "mm[Hg]": {"mm[Hg]": SAME, "kPa": Linear(760 / 101.325)},
    "10*9/L": {
        "10*9/L": SAME,
        "/nL": SAME,
        "10*3/uL": SAME,
        "10*3/mm3": SAME,
        "10*6/mL": SAME,
        "/uL": Linear(1e-3),
        "{cells}/uL": Linear(1e-3),
        "/mm3": Linear(1e-3),
        "10*6/L": Linear(1e-3),
    },
    "mg/L": {
        "mg/L": SAME,
        "ug/mL": SAME,
        "mg/dL": Linear(10.0),
        "g/L": Linear(1000.0),
    },
    "U/L": {
        "U/L": SAME,
        "[IU]/L": SAME,
        "mU/mL": SAME,
        "ukat/L": Linear(60.0),
    },
    "a": {
        "a": SAME,
        "mo": Linear(1 / 12),
        "wk": Linear(7 / 365.25),
        "d": Linear(1 / 365.25),
    },
    "L/min": {"L/min": SAME, "mL/min": Linear(1e-3)},
}

# Spellings seen in EHR feeds that are not UCUM codes, lower case → UCUM.
ALIASES: Mapping[str, str] = {
    "mmhg": "mm[Hg]",
    "mm hg": "mm[Hg]",
    "degc": "Cel",
    "deg c": "Cel",
    "°c": "Cel",
    "c": "Cel",
    "celsius": "Cel",
    "degf": "[degF]",
    "deg f": "[degF]",
    "°f": "[degF]",
    "f": "[degF]",
    "fahrenheit": "[degF]",
    "bpm": "/min",
    "beats/min": "/min",
    "beats/minute": "/min",
    "breaths/min": "/min",
    "breaths/minute": "/min",
    "per min": "/min",
    "min-1": "/min",
    "x10*9/l": "10*9/L",
    "x10^9/l": "10*9/L",
    "10^9/l": "10*9/L",
    "giga/l": "10*9/L",
    "giga.l-1": "10*9/L",
    "x10*3/ul": "10*3/uL",
    "x10^3/ul": "10*3/uL",
    "10^3/ul": "10*3/uL",
    "k/ul": "10*3/uL",
    "cells/ul": "{cells}/uL",
    "iu/l": "[IU]/L",
    "percent": "%",
    "l/min": "L/min",
    "lpm": "L/min",
    "years": "a",
    "year": "a",
    "yr": "a",
}

_UCUM: frozenset[str] = frozenset(
    code for table in CONVERSIONS.values() for code in table
)
_BY_LOWER_CASE: Mapping[str, str] = {code.lower(): code for code in _UCUM}


def recognise(unit: str) -> str | None:
    """Return the UCUM code for a unit as sent, or ``None`` when unknown."""
    text = unit.strip()
    if text in _UCUM:
        return text
    lowered = text.lower()
    return _BY_LOWER_CASE.get(lowered) or ALIASES.get(lowered)


def converter(canonical: str, unit: str | None, what: str) -> Callable[[float], float]:
    """Return the conversion from ``unit`` into ``canonical``.

    Raises
    ------
    InvalidInput
        If there is no unit, or it is unknown or not convertible.
    """
    if unit is None or not unit.strip():
        raise InvalidInput(f"{what} has no unit; expected {canonical}")
    code = recognise(unit)
    table = CONVERSIONS.get(canonical, {canonical: SAME})
    if code is None or code not in table:
        known = ", ".join(sorted(table))
        raise InvalidInput(
            f"{what} has unit {unit!r}, which does not convert to {canonical} "
            f"(accepted: {known})"
        )
    return table[code]


def to_canonical(canonical: str, value: float, unit: str | None, what: str) -> float:
    """Convert a value into the canonical unit.

    Raises
    ------
    InvalidInput
        If the unit is missing, unknown or not convertible, or a percentage
        between 0 and 1 makes the value ambiguous.
    """
    convert = converter(canonical, unit, what)
    if canonical == "%" and recognise(unit or "") == "%" and 0 < value <= 1:
        raise InvalidInput(
            f"{what} is {value} %, which looks like a fraction sent as a "
            "percentage; send a fraction with unit '1' or a percentage in 0..100"
        )
    if convert is SAME:
        return value
    # Twelve significant digits drop the binary noise of the conversion
    # (105600 /uL is 105.6, not 105.60000000000001, 10*9/L).
    return float(f"{convert(value):.12g}")
