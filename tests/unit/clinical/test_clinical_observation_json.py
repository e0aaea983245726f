"""The quick Observation reading accepts only what fhir.resources accepts.

Every element the pipeline reads is mutated (bad types, bad formats, empty,
null, unknown neighbours, removal) in Observations of every shape read. For each
mutant: if the quick reading takes it, the library must validate it too, and
reading the message either way must give the same result. Elements the pipeline
does not read (``category``, ``display``…) are outside the promise.
"""

import copy
import json
from typing import Any

import pytest
from cxrwatch.clinical import fhir as fhir_module
from cxrwatch.clinical import observation_json
from cxrwatch.clinical.fhir import FhirReader
from cxrwatch.clinical.times import FacilityClock
from cxrwatch.core.errors import InvalidInput
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"

QUANTITY = {
    "resourceType": "Observation",
    "id": "hr-1",
    "meta": {"versionId": "3", "lastUpdated": "2021-03-09T15:00:00Z"},
    "identifier": [{"system": "urn:oid:1.2.3", "value": "obs-1"}],
    "status": "final",
    "category": [{"coding": [{"code": "vital-signs"}]}],
    "code": {"coding": [{"system": LOINC, "code": "8867-4"}], "text": "Heart rate"},
    "subject": {
        "reference": "Patient/p1",
        "type": "Patient",
        "identifier": {"system": "urn:oid:9", "value": "MRN1"},
    },
    "effectiveDateTime": "2021-03-09T14:30:00-05:00",
    "issued": "2021-03-09T14:35:00-05:00",
    "valueQuantity": {"value": 88, "unit": "/min", "system": UCUM, "code": "/min"},
}
PANEL = {
    "resourceType": "Observation",
    "id": "bp-1",
    "status": "amended",
    "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
    "subject": {"reference": "Patient/p1"},
    "effectivePeriod": {"start": "2021-03-09T14:00:00Z", "end": "2021-03-09T14:05:00Z"},
    "component": [
        {
            "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
            "valueQuantity": {"value": 12.5, "system": UCUM, "code": "kPa"},
        },
        {
            "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
            "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]"},
        },
    ],
}
CODED = {
    "resourceType": "Observation",
    "status": "preliminary",
    "code": {"coding": [{"system": LOINC, "code": "3151-8"}]},
    "subject": {"reference": "Patient/p2"},
    "effectiveDateTime": "2021-03-09",
    "valueCodeableConcept": {
        "coding": [{"system": "http://snomed.info/sct", "code": "371907003"}],
        "text": "Nasal cannula",
    },
}
YES_NO = {
    "resourceType": "Observation",
    "id": "o2",
    "status": "final",
    "code": {"coding": [{"system": LOINC, "code": "3150-0"}]},
    "subject": {"reference": "Patient/p3"},
    "effectiveInstant": "2021-03-09T14:30:00.250+01:00",
    "valueBoolean": True,
}
BASES = [QUANTITY, PANEL, CODED, YES_NO]

BAD_VALUES: list[Any] = [
    None,
    "",
    " ",
    "a  b",
    " x",
    0,
    -1.5,
    True,
    [],
    {},
    [1],
    {"x": 1},
    "x" * 70,
    "abc$",
    "2021",
    "2021-03",
    "2021-13-01",
    "2021-02-30",
    "2021-03-09T25:00:00Z",
    "2021-03-09T14:30:60Z",
    "2021-03-09T14:30:00+15:00",
    "2021-03-09T14:30:00",
    "2021-03-09T14:30",
    "2021-03-09T14:30:00.1234567Z",
    "2021-03-09 14:30:00Z",
    "NaN",
    "88",
    float("inf"),
    1e400,
    "<",
    "ad",
    "final",
]


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every element path of a document, objects and lists alike."""
    found = []
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return found
    for key, value in items:
        if key == "resourceType":
            continue
        found.append((*prefix, key))
        found += paths(value, (*prefix, key))
    return found


def containers(node: Any, prefix: tuple = ()) -> list[tuple]:
    """The paths of every object in a document, itself included."""
    found = [prefix] if isinstance(node, dict) else []
    if isinstance(node, dict):
        items = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return found
    for key, value in items:
        found += containers(value, (*prefix, key))
    return found


def at(document: Any, path: tuple) -> Any:
    for key in path:
        document = document[key]
    return document


# Elements the pipeline does not read; the quick reading does not check them.
NOT_READ = frozenset(
    {
        "category",
        "display",
        "version",
        "userSelected",
        "use",
        "period",
        "assigner",
        "extension",
        "profile",
        "security",
        "tag",
        "source",
    }
)


def read_by_the_pipeline(path: tuple) -> bool:
    """Whether the pipeline reads the element at ``path`` (or something in it)."""
    if any(key in NOT_READ for key in path):
        return False
    if path and path[0] == "text":  # the narrative, not CodeableConcept.text
        return False
    return not (len(path) > 1 and path[-1] == "id")  # element ids


def mutants() -> list[tuple[str, dict]]:
    found = []
    for number, base in enumerate(BASES):
        for path in filter(read_by_the_pipeline, paths(base)):
            for value in BAD_VALUES:
                mutant = copy.deepcopy(base)
                at(mutant, path[:-1])[path[-1]] = value
                found.append((f"{number}:{path}={value!r}", mutant))
            mutant = copy.deepcopy(base)
            del at(mutant, path[:-1])[path[-1]]
            found.append((f"{number}:{path} removed", mutant))
        for path in filter(read_by_the_pipeline, containers(base)):
            for key, value in (("unknownElement", 1), ("_status", {"id": "x"})):
                mutant = copy.deepcopy(base)
                at(mutant, path)[key] = value
                found.append((f"{number}:{path}+{key}", mutant))
            for key in ("modifierExtension", "contained", "implicitRules"):
                mutant = copy.deepcopy(base)
                at(mutant, path)[key] = [{"url": "http://x"}]
                found.append((f"{number}:{path}+{key}", mutant))
    return found


MUTANTS = mutants()
CLOCK = FacilityClock("UTC")
OBSERVATION = get_fhir_model_class("Observation")


def library_accepts(document: dict) -> bool:
    """The library's verdict on the message as the reader gives it to it."""
    raw = CLOCK.complete_fhir_json(json.dumps(document).encode())
    try:
        OBSERVATION.model_validate(json.loads(raw))
    except (ValidationError, ValueError):
        return False
    return True


def outcome(reader: FhirReader, raw: bytes) -> Any:
    try:
        reading = reader.read(raw)
    except InvalidInput as exc:
        return (type(exc).__name__,)
    return (
        {
            key: (p.observations, p.birth_date, p.sex)
            for key, p in reading.patients.items()
        },
        dict(reading.ignored),
    )


def test_the_mutations_cover_every_element_read():
    mutated = [name for name, _ in MUTANTS]
    for element in (
        "'meta', 'lastUpdated'",
        "'component', 0, 'valueQuantity', 'value'",
        "'subject', 'identifier', 'value'",
        "'effectivePeriod', 'end'",
        "'valueCodeableConcept', 'coding', 0, 'code'",
        "'valueBoolean'",
        "'effectiveInstant'",
        "'issued'",
        "'identifier', 0, 'system'",
    ):
        assert any(element in name for name in mutated), element
    assert len(MUTANTS) > 2000


def test_quick_reading_accepts_only_what_the_library_accepts(codes):
    quick, library = FhirReader(codes, CLOCK), FhirReader(codes, CLOCK)
    taken = 0
    for name, document in MUTANTS:
        element = observation_json.observation(document)
        if element is None:
            continue
        taken += 1
        assert library_accepts(document), f"quick reading took {name}"
        raw = json.dumps(document).encode()
        expected = _library_outcome(library, raw)
        assert outcome(quick, raw) == expected, name
    assert taken > 100  # valid mutants (another unit, a valid code) do go quick


def _library_outcome(reader: FhirReader, raw: bytes) -> Any:
    original = observation_json.observation
    fhir_module.observation_json.observation = lambda _document: None
    try:
        return outcome(reader, raw)
    finally:
        fhir_module.observation_json.observation = original


@pytest.mark.parametrize("base", BASES, ids=["quantity", "panel", "coded", "yes-no"])
def test_plain_observations_take_the_quick_reading(base):
    assert observation_json.observation(base) is not None
    assert library_accepts(base)


def test_samples_of_the_specification_take_the_quick_reading(shared_data):
    for path in sorted((shared_data / "fhir_r4").glob("Observation-*.json")):
        document = json.loads(path.read_bytes())
        assert observation_json.observation(document) is not None, path.name
