"""A plain FHIR Observation read straight from its JSON, without building its model.

Validating a message with fhir.resources builds a model of every element and
costs four fifths of the clinical step. Most messages are one plain vital-sign
or lab Observation, so for those this module checks the elements the pipeline
reads, each against the FHIR rules for its type and more strictly than the
library: ``id``, ``meta.versionId``, ``meta.lastUpdated``, ``status``, ``code``,
``subject``, ``identifier``, ``effectiveDateTime``, ``effectivePeriod``,
``effectiveInstant``, ``issued``, ``valueQuantity``, ``valueCodeableConcept``,
``valueBoolean`` and each ``component``'s code and value.

Whatever it is not sure of goes to the library instead (:func:`observation`
returns ``None``): an element it does not know, a modifier extension, a
contained resource, a primitive extension (``_status``), a ``null``, an empty
object or list, a time it cannot read exactly, a value type the pipeline
refuses anyway. So it accepts a message only where the library accepts it on
the elements read; ``tests/unit/clinical/test_clinical_observation_json.py``
checks this with mutations of every element read. Elements the pipeline does not
read (``interpretation``, ``referenceRange``, ``note``…) are not checked here.
"""

import math
import re
from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta
from types import SimpleNamespace
from typing import Any

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_CODE = re.compile(r"[^\s]+(\s[^\s]+)*")
_URI = re.compile(r"\S+")
_DATE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])")
_INSTANT = re.compile(
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?"
    r"(Z|[+-](0\d|1[0-3]):[0-5]\d|[+-]14:00)"
)
_LOCAL_DATE_TIME = re.compile(
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
    r"T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?"
)
_COMPARATORS = frozenset({"<", "<=", ">=", ">", "ad"})
_MAX_OFFSET = timedelta(hours=14)


class Unsure(Exception):
    """The JSON holds something this reader leaves to the library."""


class Element(SimpleNamespace):
    """A checked element; an element the JSON lacks reads as ``None``."""

    def __getattr__(self, name: str) -> None:
        return None


class ObservationElement(Element):
    """A checked Observation, read like the library's model of one."""

    def get_resource_type(self) -> str:
        return "Observation"


def observation(document: Mapping[str, Any]) -> ObservationElement | None:
    """Return the Observation when its shape is plain, else ``None`` (use the
    library)."""
    if document.get("resourceType") != "Observation":
        return None
    try:
        return ObservationElement(**_observation_fields(document))
    except Unsure:
        return None


def _fields(
    node: Any, schema: Mapping[str, Callable[[Any], Any] | None]
) -> dict[str, Any]:
    if not isinstance(node, dict) or not node:
        raise Unsure
    read: dict[str, Any] = {}
    for key, value in node.items():
        if key not in schema:
            raise Unsure  # unknown, a primitive extension, or a modifier
        check = schema[key]
        if value is None or value == [] or value == {}:
            raise Unsure
        if check is not None:
            read[key] = check(value)
    return read


def _element(
    schema: Mapping[str, Callable[[Any], Any] | None],
) -> Callable[[Any], Element]:
    return lambda node: Element(**_fields(node, schema))


def _list_of(check: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def checked(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise Unsure
        return [check(item) for item in value]

    return checked


def _pattern(pattern: re.Pattern[str]) -> Callable[[Any], str]:
    def checked(value: Any) -> str:
        if not isinstance(value, str) or pattern.fullmatch(value) is None:
            raise Unsure
        return value

    return checked


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Unsure
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Unsure
    return value


def _decimal(value: Any) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unsure
    if isinstance(value, float) and not math.isfinite(value):
        raise Unsure
    return value


def _comparator(value: Any) -> str:
    if value not in _COMPARATORS:
        raise Unsure
    return str(value)


def _instant(value: Any) -> datetime:
    if not isinstance(value, str) or _INSTANT.fullmatch(value) is None:
        raise Unsure
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise Unsure from None
    offset = moment.utcoffset()
    if offset is None or abs(offset) > _MAX_OFFSET:
        raise Unsure
    return moment


def _date_time(value: Any) -> datetime | date:
    """A dateTime of a whole day, or of a time with or without an offset (the
    reader puts the latter in the facility's zone); coarser ones go to the
    library, which keeps them as text."""
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise Unsure from None
    if isinstance(value, str) and _LOCAL_DATE_TIME.fullmatch(value):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise Unsure from None
    return _instant(value)


_ID_CHECK = _pattern(_ID)
_CODE_CHECK = _pattern(_CODE)
_URI_CHECK = _pattern(_URI)

# Elements every complex type may carry and the pipeline does not read.
_COMMON: dict[str, Callable[[Any], Any] | None] = {
    "id": None,
    "extension": None,
    "fhir_comments": None,
}
_CODING = _element(
    _COMMON
    | {
        "system": _URI_CHECK,
        "code": _CODE_CHECK,
        "display": None,
        "version": None,
        "userSelected": None,
    }
)
_CONCEPT = _element(_COMMON | {"coding": _list_of(_CODING), "text": _string})
_IDENTIFIER = _element(
    _COMMON
    | {
        "system": _URI_CHECK,
        "value": _string,
        "use": None,
        "type": None,
        "period": None,
        "assigner": None,
    }
)
_REFERENCE = _element(
    _COMMON
    | {
        "reference": _string,
        "type": _URI_CHECK,
        "identifier": _IDENTIFIER,
        "display": None,
    }
)
_PERIOD = _element(_COMMON | {"start": _date_time, "end": _date_time})
_META = _element(
    _COMMON
    | {
        "versionId": _ID_CHECK,
        "lastUpdated": _instant,
        "profile": None,
        "security": None,
        "tag": None,
        "source": None,
    }
)
_QUANTITY = _element(
    _COMMON
    | {
        "value": _decimal,
        "comparator": _comparator,
        "unit": _string,
        "system": _URI_CHECK,
        "code": _CODE_CHECK,
    }
)
_VALUES: dict[str, Callable[[Any], Any] | None] = {
    "valueQuantity": _QUANTITY,
    "valueCodeableConcept": _CONCEPT,
    "valueBoolean": _boolean,
}
_NOT_READ = (
    "text",
    "language",
    "basedOn",
    "partOf",
    "category",
    "focus",
    "encounter",
    "performer",
    "dataAbsentReason",
    "interpretation",
    "note",
    "bodySite",
    "method",
    "specimen",
    "device",
    "referenceRange",
    "hasMember",
    "derivedFrom",
)


def _component(node: Any) -> Element:
    read = _fields(
        node,
        _COMMON
        | _VALUES
        | {
            "code": _CONCEPT,
            "dataAbsentReason": None,
            "interpretation": None,
            "referenceRange": None,
        },
    )
    _one_value(node)
    if "code" not in read:
        raise Unsure
    return Element(**read)


def _one_value(node: Mapping[str, Any]) -> None:
    if sum(key.startswith("value") for key in node) > 1:
        raise Unsure


def _observation_fields(node: Any) -> dict[str, Any]:
    read = _fields(node, _OBSERVATION_ELEMENTS)
    _one_value(node)
    if "status" not in read or "code" not in read:
        raise Unsure
    effective = [key for key in node if key.startswith("effective")]
    if len(effective) > 1:
        raise Unsure
    return read


_OBSERVATION_ELEMENTS: dict[str, Callable[[Any], Any] | None] = (
    {"resourceType": None, "fhir_comments": None, "extension": None}
    | dict.fromkeys(_NOT_READ)
    | _VALUES
    | {
        "id": _ID_CHECK,
        "meta": _META,
        "status": _CODE_CHECK,
        "code": _CONCEPT,
        "subject": _REFERENCE,
        "identifier": _list_of(_IDENTIFIER),
        "effectiveDateTime": _date_time,
        "effectivePeriod": _PERIOD,
        "effectiveInstant": _instant,
        "issued": _instant,
        "component": _list_of(_component),
    }
)
