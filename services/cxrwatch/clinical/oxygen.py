"""Whether a patient breathes supplemental oxygen, from any of the usual answers.

The model's ``on_oxygen`` feature (and NEWS2's "air or oxygen") is 1.0 on
supplemental oxygen and 0.0 on air. Senders say it in several ways:

* a yes/no: FHIR ``valueBoolean``, HL7 table 0136 ``Y``/``N``, the LOINC
  answers ``LA33-6`` (yes) and ``LA32-8`` (no), SNOMED CT 373066001 / 373067005;
* a delivery method or device (SNOMED CT): breathing room air 722742002 is air;
  oxygen therapy 57485005, by nasal cannula 371907003, by mask 371908008 and the
  oxygen nasal cannula 336623009 are oxygen;
* an oxygen flow (LOINC 3151-8) in L/min or mL/min: above 0 is oxygen;
* an inspired oxygen fraction (LOINC 3150-0) as a percentage (above 21 % is
  oxygen) or as a fraction with unit ``1`` (above 0.21).

Any other coded answer is refused with its code: add it to ``ANSWERS`` once its
meaning is known.
"""

from cxrwatch.clinical import units
from cxrwatch.clinical.answers import Answer, CodedAnswer, Quantity
from cxrwatch.core.errors import InvalidInput

ANSWERS: dict[str, float] = {
    "y": 1.0,
    "yes": 1.0,
    "la33-6": 1.0,
    "373066001": 1.0,
    "57485005": 1.0,
    "371907003": 1.0,
    "371908008": 1.0,
    "336623009": 1.0,
    "n": 0.0,
    "no": 0.0,
    "la32-8": 0.0,
    "373067005": 0.0,
    "722742002": 0.0,
}

ROOM_AIR_PERCENT = 21.0


def supplemental_oxygen(answer: Answer, what: str) -> float:
    """Return 1.0 on supplemental oxygen, 0.0 on air.

    Raises
    ------
    InvalidInput
        If the answer is a code of unknown meaning, a negative flow, or a
        quantity in a unit that is neither a flow nor a fraction.
    """
    if isinstance(answer, bool):
        return 1.0 if answer else 0.0
    if isinstance(answer, CodedAnswer):
        return _coded(answer, what)
    return _quantity(answer, what)


def _coded(answer: CodedAnswer, what: str) -> float:
    for code in answer.codes:
        if (meaning := ANSWERS.get(code.strip().lower())) is not None:
            return meaning
    raise InvalidInput(
        f"{what} answers {answer.codes or answer.text!r}, which is not a known "
        "oxygen delivery answer (room air, oxygen therapy, a device, yes or no)"
    )


def _quantity(quantity: Quantity, what: str) -> float:
    if quantity.value < 0:
        raise InvalidInput(f"{what} is {quantity.value}, a negative oxygen amount")
    unit = units.recognise(quantity.unit or "")
    if unit in ("L/min", "mL/min"):
        return 1.0 if quantity.value > 0 else 0.0
    if unit in ("%", "1"):
        percent = units.to_canonical("%", quantity.value, quantity.unit, what)
        return 1.0 if percent > ROOM_AIR_PERCENT else 0.0
    raise InvalidInput(
        f"{what} has unit {quantity.unit!r}; an oxygen flow needs L/min and an "
        "inspired fraction % or 1"
    )
