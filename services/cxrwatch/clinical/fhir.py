"""FHIR R4 JSON (Observation, Patient, Bundle) read into a :class:`Reading`.

Validation is the library's: fhir.resources 8.3 carries R5 at its top level and
R4B (4.3.0) as a subpackage, but no R4 one. R4B's Observation, Patient and Bundle
keep every element R4 has with the same names and types, so R4 JSON is
validated with the R4B models. On top of the library's checks this module
refuses what the library lets through but the pipeline relies on: an unknown
Observation status, Bundle type or Patient gender. A plain single Observation
takes a quicker reading that checks only the elements read, and more strictly
than the library (:mod:`cxrwatch.clinical.observation_json`).

What is read:

* Observation: ``code`` and each ``component.code`` (a blood-pressure panel
  85354-9 gives its systolic 8480-6 component); ``valueQuantity``,
  ``valueCodeableConcept`` (oxygen delivery, sex) and ``valueBoolean``;
  ``effectiveDateTime``, ``effectiveInstant`` or ``effectivePeriod`` (its end,
  else its start; one ending before it starts is refused), else the time of a
  panel or report in the same Bundle that lists the observation, else
  ``issued``; ``status``: ``preliminary``, ``final``, ``amended`` and
  ``corrected`` store the value (a later version replaces an earlier one),
  ``entered-in-error`` withdraws it, ``registered``, ``cancelled`` and
  ``unknown`` carry no value and are counted as ignored.
* Patient: ``birthDate`` (refused when after today) and ``gender``.
* Bundle of type transaction, batch, collection or searchset: its Observation
  and Patient entries; other entries only lend times and patients. An entry
  whose ``request.method`` is other than POST or PUT (a DELETE, a PATCH, a
  read) asks for something this service does not do: the Bundle is refused.

Identity: the source id of a value is ``fhir:Observation/<id>`` (else the first
identifier, else the entry's fullUrl, else a hash of the resource), followed by
``#<code>`` for a component; its version is ``meta.versionId`` (else
``meta.lastUpdated`` in milliseconds, else 0) combined with the status rank.
The patient key is the subject's Patient id, or, when
``CXRWATCH_CLINICAL_PATIENT_IDENTIFIER_SYSTEM`` is set, the value of the
patient identifier of that system, read from the subject's logical identifier,
a conditional reference ``Patient?identifier=system|value`` or the Patient
resource the reference points to in the same Bundle. An absolute reference
(``https://ehr.example/fhir/Patient/123``) names a patient of the server at its
base, whose ids need not be this deployment's: it is refused unless that base is
listed in ``CXRWATCH_FHIR_SERVER_BASES``.
"""

import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from cxrwatch.clinical import observation_json
from cxrwatch.clinical.answers import Answer, CodedAnswer, Quantity
from cxrwatch.clinical.codes import CodeMatch, FeatureCodes
from cxrwatch.clinical.demographics import check_birth_date, sex_from_code
from cxrwatch.clinical.fhir_json import fhir_document
from cxrwatch.clinical.measurements import feature_value
from cxrwatch.clinical.reading import STATUS_RANKS, Reading, version
from cxrwatch.clinical.times import FacilityClock
from cxrwatch.core.errors import InvalidInput, MissingPatient, UnsupportedInput
from cxrwatch.core.observations import WITHDRAWN, StoredObservation

logger = logging.getLogger(__name__)

UCUM = "http://unitsofmeasure.org"
BUNDLE_TYPES = frozenset({"transaction", "batch", "collection", "searchset"})
# Request methods of an entry that create or update its resource.
STORING_METHODS = frozenset({"POST", "PUT"})
RESOURCE_TYPES = frozenset({"Observation", "Patient", "Bundle"})
GENDERS = frozenset({"male", "female", "other", "unknown"})
NO_VALUE_STATUSES = {
    "registered": "status-registered",
    "cancelled": "status-cancelled",
    "unknown": "status-unknown",
}
_VALUE_KINDS = (
    ("valueString", "a string"),
    ("valueInteger", "an integer without a unit"),
    ("valueRange", "a range"),
    ("valueRatio", "a ratio"),
    ("valueSampledData", "sampled data"),
    ("valueTime", "a time"),
    ("valueDateTime", "a date/time"),
    ("valuePeriod", "a period"),
)
_BOM = b"\xef\xbb\xbf"
# Elements that can say who a person is. A reason goes to the logs and the
# dead-letter topic, so a bad value under one of them is described, not repeated.
PERSONAL_ELEMENTS = frozenset(
    {
        "address",
        "birthDate",
        "contact",
        "contained",
        "display",
        "extension",
        "identifier",
        "link",
        "modifierExtension",
        "name",
        "note",
        "patient",
        "performer",
        "photo",
        "subject",
        "telecom",
        "text",
        "valueString",
    }
)
_MAX_EXPLICIT_VERSION = 2**48
# An absolute URL; its group is the host (and port), without any user name.
_ABSOLUTE_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?:[^/@]*@)?([^/]*)")


class FhirReader:
    """Reads one FHIR R4 JSON resource per message."""

    def __init__(
        self,
        codes: FeatureCodes,
        clock: FacilityClock,
        *,
        identifier_system: str | None = None,
        server_bases: Iterable[str] = (),
    ) -> None:
        self._codes = codes
        self._clock = clock
        self._identifier_system = identifier_system
        self._server_bases = sorted({base.rstrip("/") for base in server_bases})

    def read(self, raw: bytes) -> Reading:
        """Read a resource; refuse the whole message if any mapped value is bad.

        Raises
        ------
        InvalidInput
            If the JSON or the resource is invalid, or any observation that maps
            to a feature is refused (each is named).
        UnsupportedInput
            For a resource type or Bundle type this service does not read.
        MissingPatient
            If a value has no usable patient.
        """
        raw = raw.removeprefix(_BOM)
        reading = Reading("fhir-r4", "fhir:" + hashlib.sha256(raw).hexdigest()[:32])
        document = fhir_document(raw)
        resource = observation_json.observation(document)
        if resource is None:
            completed = self._clock.complete_fhir_json(raw)
            if completed is not raw:
                document = fhir_document(completed)
            resource = _validate(document)
        kind = resource.get_resource_type()
        if kind == "Bundle":
            self._bundle(resource, reading)
        else:
            context = _Context([(None, resource)])
            label = f"{kind}/{resource.id}" if resource.id else kind
            self._entry(resource, reading.message_id, label, context, reading)
        reading.raise_refusals()
        return reading

    def _bundle(self, bundle: Any, reading: Reading) -> None:
        if bundle.type not in BUNDLE_TYPES:
            raise UnsupportedInput(
                f"Bundle type {bundle.type!r} is not read here; send one of "
                f"{', '.join(sorted(BUNDLE_TYPES))}"
            )
        entries = list(bundle.entry or ())
        context = _Context(
            [(e.fullUrl, e.resource) for e in entries if e.resource is not None]
        )
        for number, entry in enumerate(entries, start=1):
            url, resource = entry.fullUrl, entry.resource
            method = entry.request.method if entry.request is not None else None
            if method is not None and method not in STORING_METHODS:
                reading.refusals.append(
                    UnsupportedInput(
                        f"entry {number}: request method {method!r} is not "
                        "accepted; only POST and PUT entries are stored (withdraw "
                        "an Observation with status entered-in-error)"
                    )
                )
                continue
            if resource is None:
                reading.ignored["entry-without-resource"] += 1
                continue
            kind = resource.get_resource_type()
            label = f"entry {number} ({kind}/{resource.id or url or '?'})"
            place = f"fhir:{url}" if url else f"{reading.message_id}#entry-{number}"
            self._entry(resource, place, label, context, reading)

    def _entry(
        self,
        resource: Any,
        place: str,
        label: str,
        context: "_Context",
        reading: Reading,
    ) -> None:
        kind = resource.get_resource_type()
        if kind == "Observation":
            self._observation(resource, place, label, context, reading)
        elif kind == "Patient":
            self._patient(resource, label, reading)
        else:
            reading.ignored["other-resource"] += 1

    def _observation(
        self,
        observation: Any,
        place: str,
        label: str,
        context: "_Context",
        reading: Reading,
    ) -> None:
        status = observation.status
        if status in NO_VALUE_STATUSES:
            reading.ignored[NO_VALUE_STATUSES[status]] += 1
            return
        if status not in STATUS_RANKS:
            reading.refusals.append(
                InvalidInput(f"{label}: status {status!r} is not an Observation status")
            )
            return
        matched = list(self._matches(observation, reading))
        if not matched:
            return
        try:
            patient_key = self._subject_key(observation.subject, context, label)
            effective = self._effective(observation, context, label)
        except InvalidInput as exc:
            reading.refusals.append(exc)
            return
        source = _source_id(observation, place)
        revision = version(_explicit_version(observation), status)
        for match, holder, component in matched:
            what = f"{label} ({match.label} → {match.feature.name})"
            if status == WITHDRAWN:
                value = None
            else:
                try:
                    answer = _answer(holder, what)
                    value = (
                        None
                        if answer is None
                        else feature_value(match.feature, answer, what)
                    )
                except InvalidInput as exc:
                    reading.refusals.append(exc)
                    continue
                if value is None:
                    reading.ignored["no-value"] += 1
                    continue
            reading.patient(patient_key).observations.append(
                StoredObservation(
                    feature=match.feature.name,
                    value=value,
                    unit=match.feature.unit,
                    effective_at=effective,
                    source_id=f"{source}#{match.code}" if component else source,
                    version=revision,
                    status=status,
                )
            )

    def _matches(
        self, observation: Any, reading: Reading
    ) -> Iterator[tuple[CodeMatch, Any, bool]]:
        holders = [(observation, False)]
        holders += [(component, True) for component in observation.component or ()]
        for holder, component in holders:
            codings = [(c.system, c.code) for c in holder.code.coding or ()]
            match = self._codes.match(codings)
            if match is None:
                reading.ignored["unmapped-code"] += 1
                continue
            yield match, holder, component

    def _effective(self, observation: Any, context: "_Context", label: str) -> datetime:
        clock = self._clock
        if observation.effectiveDateTime is not None:
            return clock.fhir_time(
                observation.effectiveDateTime, f"{label} effectiveDateTime"
            )
        if observation.effectiveInstant is not None:
            return clock.fhir_time(
                observation.effectiveInstant, f"{label} effectiveInstant"
            )
        period = observation.effectivePeriod
        if period is not None and (period.end or period.start) is not None:
            return self._period_end(period, f"{label} effectivePeriod")
        if observation.effectiveTiming is not None:
            raise InvalidInput(f"{label}: effectiveTiming is not read; send a dateTime")
        if (inherited := context.parent_time(observation)) is not None:
            return clock.fhir_time(inherited, f"{label} time of its panel or report")
        if observation.issued is not None:
            return clock.fhir_time(observation.issued, f"{label} issued")
        raise InvalidInput(
            f"{label} has no time: no effective[x], no panel or report listing it "
            "with one, no issued"
        )

    def _period_end(self, period: Any, what: str) -> datetime:
        """The end of a period, else its start; refused if it ends before it
        starts. A day alone reads as its last moment, so a day is compared with
        a day only, a time with a time."""
        end = self._clock.fhir_time(period.end or period.start, what)
        alike = period.end is not None and type(period.start) is type(period.end)
        if alike and end < self._clock.fhir_time(period.start, what):
            raise InvalidInput(
                f"{what} ends at {period.end.isoformat()}, before it starts at "
                f"{period.start.isoformat()}"
            )
        return end

    def _subject_key(self, subject: Any, context: "_Context", label: str) -> str:
        if subject is None:
            raise MissingPatient(f"{label} has no subject")
        reference = subject.reference or ""
        kind = _reference_type(reference) or subject.type
        if kind not in (None, "Patient"):
            raise MissingPatient(f"{label}: subject {reference!r} is not a Patient")
        self._check_server(reference, label)
        if self._identifier_system is not None:
            return self._identified_subject(subject, context, label)
        target = context.resolve(reference)
        if target is not None and target.get_resource_type() == "Patient" and target.id:
            return str(target.id)
        if kind == "Patient" and not reference.startswith(("urn:", "Patient?")):
            return _reference_id(reference)
        raise MissingPatient(
            f"{label}: subject {reference or subject.identifier!r} gives no Patient "
            "id; set CXRWATCH_CLINICAL_PATIENT_IDENTIFIER_SYSTEM to key patients "
            "by an identifier"
        )

    def _check_server(self, reference: str, label: str) -> None:
        """Refuse an absolute reference to a server not declared this
        deployment's own: the id it ends in is that server's, and may name
        another patient here. The reason names the host, never the id."""
        absolute = _ABSOLUTE_URL.match(reference)
        if absolute is None or _reference_base(reference) in self._server_bases:
            return
        listed = ", ".join(self._server_bases) or "none set"
        raise MissingPatient(
            f"{label}: subject is a Patient on the FHIR server at {absolute[1]}, "
            f"whose base is not in CXRWATCH_FHIR_SERVER_BASES ({listed}): its "
            "Patient ids are not this deployment's"
        )

    def _identified_subject(self, subject: Any, context: "_Context", label: str) -> str:
        system = self._identifier_system
        logical = subject.identifier
        if logical is not None and logical.system == system and logical.value:
            return str(logical.value)
        reference = subject.reference or ""
        if reference.startswith("Patient?"):
            for token in parse_qs(urlsplit(reference).query).get("identifier", []):
                token_system, _, token_value = token.rpartition("|")
                if token_system == system and token_value:
                    return token_value
        target = context.resolve(reference)
        if target is not None and (value := _identifier(target, system)):
            return value
        raise MissingPatient(
            f"{label}: subject {reference or logical!r} carries no identifier of "
            f"system {system!r} (CXRWATCH_CLINICAL_PATIENT_IDENTIFIER_SYSTEM)"
        )

    def _patient(self, patient: Any, label: str, reading: Reading) -> None:
        if self._identifier_system is not None:
            key = _identifier(patient, self._identifier_system)
        else:
            key = str(patient.id) if patient.id else None
        if not key:
            wanted = self._identifier_system or "an id"
            reading.refusals.append(MissingPatient(f"{label} has no {wanted}"))
            return
        if patient.gender is not None and patient.gender not in GENDERS:
            reading.refusals.append(
                InvalidInput(f"{label}: gender {patient.gender!r} is not a FHIR gender")
            )
            return
        born = patient.birthDate if isinstance(patient.birthDate, date) else None
        try:
            today = self._clock.day_of(datetime.now(UTC))
            check_birth_date(born, today, f"{label} birthDate")
        except InvalidInput as exc:
            reading.refusals.append(exc)
            return
        target = reading.patient(key)
        if patient.gender is not None:
            target.sex = sex_from_code(patient.gender)
        target.birth_date = born or target.birth_date


class _Context:
    """The resources of a message that references resolve to, and panel times."""

    def __init__(self, entries: list[tuple[str | None, Any]]) -> None:
        self._by_reference: dict[str, Any] = {}
        for url, resource in entries:
            if url:
                self._by_reference[url] = resource
            if resource.id:
                self._by_reference[f"{resource.get_resource_type()}/{resource.id}"] = (
                    resource
                )
        self._parent_times: dict[int, datetime | date | str] = {}
        for _url, resource in entries:
            self._note_children(resource)

    def resolve(self, reference: str | None) -> Any:
        """The resource a reference points to in this message, if it is here."""
        if not reference:
            return None
        if reference in self._by_reference:
            return self._by_reference[reference]
        parts = _reference_parts(reference)
        return self._by_reference.get("/".join(parts[-2:]))

    def parent_time(self, observation: Any) -> datetime | date | str | None:
        """The effective time of a panel or report listing ``observation``."""
        return self._parent_times.get(id(observation))

    def _note_children(self, resource: Any) -> None:
        kind = resource.get_resource_type()
        if kind == "Observation":
            children = resource.hasMember or ()
        elif kind == "DiagnosticReport":
            children = resource.result or ()
        else:
            return
        period = resource.effectivePeriod
        when = resource.effectiveDateTime or (period and (period.end or period.start))
        if when is None:
            return
        for reference in children:
            child = self.resolve(reference.reference)
            if child is not None:
                self._parent_times.setdefault(id(child), when)


def _validate(document: dict[str, Any]) -> Any:
    """The resource as the library's model: every element checked."""
    kind = document.get("resourceType")
    if not isinstance(kind, str) or not kind:
        raise InvalidInput("the JSON object has no resourceType")
    try:
        model = get_fhir_model_class(kind)
    except (ValueError, AttributeError) as exc:
        raise InvalidInput(f"resourceType {kind!r} is not a FHIR resource") from exc
    if kind not in RESOURCE_TYPES:
        raise UnsupportedInput(
            f"resourceType {kind!r} is not read here; send Observation, Patient "
            "or a Bundle of them"
        )
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise InvalidInput(f"not a valid FHIR R4 {kind}: {_summary(exc)}") from exc


def _answer(holder: Any, what: str) -> Answer | None:
    quantity = holder.valueQuantity
    if quantity is not None:
        if quantity.value is None:
            raise InvalidInput(f"{what}: valueQuantity has no value")
        return Quantity(float(quantity.value), _unit(quantity), quantity.comparator)
    concept = holder.valueCodeableConcept
    if concept is not None:
        codings = tuple((c.system, c.code) for c in concept.coding or ())
        return CodedAnswer(codings, concept.text)
    if holder.valueBoolean is not None:
        return bool(holder.valueBoolean)
    for field, kind in _VALUE_KINDS:
        if getattr(holder, field, None) is not None:
            raise InvalidInput(f"{what} is {kind} ({field}), not a quantity")
    return None


def _unit(quantity: Any) -> str | None:
    """The unit of a Quantity: its UCUM code, else its code, else its text."""
    if quantity.system == UCUM and quantity.code:
        return str(quantity.code)
    unit = quantity.code or quantity.unit
    return str(unit) if unit else None


def _source_id(observation: Any, place: str) -> str:
    """The Observation id, else its first identifier, else where it sits: the
    entry's fullUrl, or the message (its hash) and entry number."""
    if observation.id:
        return f"fhir:Observation/{observation.id}"
    for identifier in observation.identifier or ():
        if identifier.value:
            system = identifier.system or ""
            return f"fhir:Observation?identifier={system}|{identifier.value}"
    return place


def _explicit_version(observation: Any) -> int:
    meta = observation.meta
    if meta is None:
        return 0
    if meta.versionId and str(meta.versionId).isdigit():
        return min(int(meta.versionId), _MAX_EXPLICIT_VERSION)
    if isinstance(meta.lastUpdated, datetime):
        moment = meta.lastUpdated.astimezone(UTC)
        return int(moment.timestamp() * 1000)
    return 0


def _identifier(resource: Any, system: str | None) -> str | None:
    for identifier in resource.identifier or ():
        if identifier.system == system and identifier.value:
            return str(identifier.value)
    return None


def _reference_type(reference: str) -> str | None:
    if not reference or reference.startswith(("urn:", "#")):
        return None
    if reference.startswith("Patient?"):
        return "Patient"
    parts = _reference_parts(reference)
    return parts[-2] if len(parts) >= 2 else None


def _reference_id(reference: str) -> str:
    return _reference_parts(reference)[-1]


def _reference_base(reference: str) -> str:
    """The server base of an absolute reference ``<base>/<type>/<id>``."""
    return "/".join(_reference_parts(reference)[:-2])


def _reference_parts(reference: str) -> list[str]:
    parts = reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    return parts


def _summary(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:3]:
        where = ".".join(str(part) for part in error["loc"]) or "resource"
        problems.append(f"{where}: {error['msg']} (got {_shown(error)})")
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


def _shown(error: Any) -> str:
    """The bad value of a validation error, as far as a reason may repeat it."""
    value = error.get("input")
    if isinstance(value, dict | list):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    if PERSONAL_ELEMENTS.intersection(str(part) for part in error["loc"]):
        return f"a {type(value).__name__}, not shown"
    return repr(value)[:60]
