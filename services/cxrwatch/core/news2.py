"""NEWS2, the National Early Warning Score 2 (Royal College of Physicians, 2017).

The joiner attaches it to every inference request as the clinical reference an
alert is read against. Seven parameters score 0 to 3 each and add up to 0..20;
points per parameter:

* respiration rate /min: ≤8 → 3, 9–11 → 1, 12–20 → 0, 21–24 → 2, ≥25 → 3;
* SpO2 scale 1 %: ≤91 → 3, 92–93 → 2, 94–95 → 1, ≥96 → 0;
* SpO2 scale 2 %: ≤83 → 3, 84–85 → 2, 86–87 → 1, 88–92 → 0, ≥93 on air → 0;
  on oxygen 93–94 → 1, 95–96 → 2, ≥97 → 3;
* air or oxygen: oxygen → 2, air → 0;
* systolic blood pressure mm[Hg]: ≤90 → 3, 91–100 → 2, 101–110 → 1,
  111–219 → 0, ≥220 → 3;
* pulse /min: ≤40 → 3, 41–50 → 1, 51–90 → 0, 91–110 → 1, 111–130 → 2, ≥131 → 3;
* consciousness: alert → 0; new confusion, voice, pain, unresponsive → 3;
* temperature Cel: ≤35.0 → 3, 35.1–36.0 → 1, 36.1–38.0 → 0, 38.1–39.0 → 1,
  ≥39.1 → 2.

Each band reaches up to and including its printed upper limit, so a value
between two printed bands (a respiration rate of 20.5) falls into the band of
the higher values (21–24).

Clinical risk: low for 0–4, low-medium when any single parameter scores 3 and
the total is below 5, medium for 5–6, high for 7 or more.

When a vital sign is missing the total is not computed: ``score`` and
``clinical_risk`` are ``None``, ``missing`` names what is absent, and the
parameters that are present still appear in ``components``. A partial total
would read as reassuringly low, which is the one error an early-warning score
must not make.
"""

import math
from collections.abc import Mapping
from typing import Literal

from cxrwatch.core.events import News2

# Feature names of the manifest that NEWS2 reads, in the chart's order.
VITALS = ("resp_rate", "spo2", "on_oxygen", "systolic_bp", "heart_rate", "temperature")

# (inclusive upper limit, points) per parameter; the last band is open-ended.
_RESP_RATE = ((8, 3), (11, 1), (20, 0), (24, 2), (math.inf, 3))
_SPO2_SCALE_1 = ((91, 3), (93, 2), (95, 1), (math.inf, 0))
_SPO2_SCALE_2_AIR = ((83, 3), (85, 2), (87, 1), (math.inf, 0))
_SPO2_SCALE_2_OXYGEN = (
    (83, 3),
    (85, 2),
    (87, 1),
    (92, 0),
    (94, 1),
    (96, 2),
    (math.inf, 3),
)
_SYSTOLIC_BP = ((90, 3), (100, 2), (110, 1), (219, 0), (math.inf, 3))
_PULSE = ((40, 3), (50, 1), (90, 0), (110, 1), (130, 2), (math.inf, 3))
_TEMPERATURE = ((35.0, 3), (36.0, 1), (38.0, 0), (39.0, 1), (math.inf, 2))

_CONSCIOUSNESS = {"A": 0, "C": 3, "V": 3, "P": 3, "U": 3}


def news2(
    values: Mapping[str, float | None], *, consciousness: str = "A", scale: int = 1
) -> News2:
    """Score NEWS2 from vital signs keyed by manifest feature name.

    ``on_oxygen`` is 1.0 on supplemental oxygen and 0.0 on air. ``consciousness``
    is the ACVPU level (``C`` is new confusion). ``scale`` 2 is the SpO2 scale
    for patients with hypercapnic respiratory failure, prescribed by a clinician.

    Raises
    ------
    ValueError
        If ``consciousness`` is not one of A, C, V, P, U or ``scale`` is not 1 or 2.
    """
    level = consciousness.strip().upper()
    if level not in _CONSCIOUSNESS:
        raise ValueError(f"consciousness {consciousness!r} is not one of A, C, V, P, U")
    if scale not in (1, 2):
        raise ValueError(f"SpO2 scale {scale!r} must be 1 or 2")

    present = {name: values.get(name) for name in VITALS}
    missing = [name for name, value in present.items() if value is None]
    components = {"consciousness": _CONSCIOUSNESS[level]}
    components |= _component_points(present, scale)

    if missing:
        return News2(components=components, missing=missing)
    score = sum(components.values())
    return News2(
        score=score, clinical_risk=_risk(score, components), components=components
    )


def _component_points(
    present: Mapping[str, float | None], scale: int
) -> dict[str, int]:
    oxygen = present["on_oxygen"]
    points: dict[str, int] = {}
    if (rate := present["resp_rate"]) is not None:
        points["resp_rate"] = _band(rate, _RESP_RATE)
    if (spo2 := present["spo2"]) is not None:
        points["spo2"] = _spo2_points(spo2, scale, oxygen)
    if oxygen is not None:
        points["on_oxygen"] = 2 if oxygen >= 0.5 else 0
    if (systolic := present["systolic_bp"]) is not None:
        points["systolic_bp"] = _band(systolic, _SYSTOLIC_BP)
    if (pulse := present["heart_rate"]) is not None:
        points["heart_rate"] = _band(pulse, _PULSE)
    if (temperature := present["temperature"]) is not None:
        points["temperature"] = _band(temperature, _TEMPERATURE)
    return points


def _spo2_points(spo2: float, scale: int, oxygen: float | None) -> int:
    if scale == 1:
        return _band(spo2, _SPO2_SCALE_1)
    # Scale 2 scores high saturations only on oxygen; air is assumed when unknown,
    # and the unknown oxygen still makes the total missing.
    on_oxygen = oxygen is not None and oxygen >= 0.5
    return _band(spo2, _SPO2_SCALE_2_OXYGEN if on_oxygen else _SPO2_SCALE_2_AIR)


def _band(value: float, bands: tuple[tuple[float, int], ...]) -> int:
    for upper, points in bands:
        if value <= upper:
            return points
    raise ValueError(f"{value} is not a number")


ClinicalRisk = Literal["low", "low-medium", "medium", "high"]


def _risk(score: int, components: Mapping[str, int]) -> ClinicalRisk:
    if score >= 7:
        return "high"
    if score >= 5:
        return "medium"
    if any(points == 3 for points in components.values()):
        return "low-medium"
    return "low"
