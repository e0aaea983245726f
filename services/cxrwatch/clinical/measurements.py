"""A feature's value, in its canonical unit, from what an observation says.

Every value passes the same gate, whatever its format:

* numeric features need a quantity with a unit that converts into the
  feature's canonical unit (see :mod:`cxrwatch.clinical.units`);
* ``on_oxygen`` reads flows, fractions, devices and yes/no answers
  (see :mod:`cxrwatch.clinical.oxygen`); ``sex`` reads sex codes;
* a censored result (``<5``) is taken at its limit;
* the result must be finite and inside the manifest's ``valid_range``; a value
  outside it (an SpO2 of 130 %, a temperature of 60 Cel) is physiologically
  impossible and refused, never clipped.
"""

import math

from cxrwatch.clinical import oxygen, units
from cxrwatch.clinical.answers import COMPARATORS, Answer, CodedAnswer, Quantity
from cxrwatch.clinical.demographics import SEX_VALUES, is_sex_code, sex_from_code
from cxrwatch.core.errors import InvalidInput
from cxrwatch.core.manifest import Feature


def feature_value(feature: Feature, answer: Answer, what: str) -> float | None:
    """Return the canonical value, or ``None`` for a valid answer the model has no
    number for (a sex recorded as other or unknown).

    Raises
    ------
    InvalidInput
        If the answer cannot give this feature a value, naming why.
    """
    if feature.name == "on_oxygen":
        value: float | None = oxygen.supplemental_oxygen(answer, what)
    elif feature.name == "sex":
        value = _sex(answer, what)
    else:
        value = _number(feature, answer, what)
    if value is not None:
        _check_range(feature, value, what)
    return value


def _number(feature: Feature, answer: Answer, what: str) -> float:
    if not isinstance(answer, Quantity):
        kind = "a yes/no" if isinstance(answer, bool) else "a coded answer"
        raise InvalidInput(f"{what} is {kind}, not a quantity in {feature.unit}")
    if answer.comparator is not None and answer.comparator not in COMPARATORS:
        raise InvalidInput(f"{what} has comparator {answer.comparator!r}")
    return units.to_canonical(feature.unit, answer.value, answer.unit, what)


def _sex(answer: Answer, what: str) -> float | None:
    if isinstance(answer, CodedAnswer):
        for code in answer.codes:
            if is_sex_code(code):
                sex = sex_from_code(code)
                return SEX_VALUES[sex] if sex is not None else None
    raise InvalidInput(f"{what} is not a recognised sex code: {answer!r}")


def _check_range(feature: Feature, value: float, what: str) -> None:
    low, high = feature.valid_range
    if not math.isfinite(value):
        raise InvalidInput(f"{what} is {value}, not a finite number")
    if not low <= value <= high:
        raise InvalidInput(
            f"{what} is {value:g} {feature.unit}, outside the physiological range "
            f"{low:g}..{high:g} {feature.unit}"
        )
