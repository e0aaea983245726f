"""HL7 v2 messages (ORU^R01 results, ADT demographics) read into a :class:`Reading`.

Parsing follows python-hl7: a message with the standard delimiters
(``|^~\\&``) is split directly into its fields, which reads exactly what the
library's parse tree holds (a test compares every field, repetition, component
and subcomponent the reader can ask for) at a tenth of the cost; any other is
parsed by the library once MSH-1 and MSH-2 are known to be usable delimiters
(the library would split a message by letters or repeated characters into
nonsense; such a message is refused naming MSH-1 or MSH-2). Unescaping is
always the library's. Around it this module accepts what feeds really send:

* segments ended by ``\\r`` (the standard), ``\\n`` or ``\\r\\n``: python-hl7 splits
  segments on ``\\r`` only, so the others are turned into ``\\r`` first (a bare
  line feed cannot occur inside a field: HL7 escapes it);
* a UTF-8 byte-order mark, an MLLP frame (``0x0B`` … ``0x1C 0x0D``), and text in
  ISO 8859-1 when MSH-18 says so;
* escape sequences (``\\S\\``, ``\\F\\``, ``\\T\\``, ``\\E\\``, ``\\R\\``, ``\\Xhh\\``)
  in every field read, by the library's unescaping.

One message per record: a batch (several MSH) is refused. ``ORU`` messages give
observations and the demographics of their PID; ``ADT`` messages give
demographics; other types are refused as unsupported.

Per OBX: OBX-3 (identifier, then alternate identifier) maps to a feature;
OBX-2 ``NM``, ``SN`` and ``ST`` (a number, optionally after a comparator) give
quantities with the unit of OBX-6, ``CWE``/``CE``/``CNE`` give coded answers;
OBX-8 abnormal flags ``<`` and ``>`` (beyond the instrument's scale) mark the
value as censored, others are read as interpretation only; OBX-11 ``P``, ``R``,
``S`` (preliminary), ``F`` (final), ``C`` (corrected), ``A`` (amended) store the value,
``D`` and ``W`` withdraw it, ``X``, ``I``, ``N``, ``O`` and ``U`` carry none. The
time is OBX-14, else OBR-7 of the enclosing order, else MSH-7.

Identity: the source id of a value is the sender (MSH-3, MSH-4), the order
(filler number OBR-3, else placer OBR-2) and OBX-3 with OBX-4, so a correction
sent in a later message replaces the value; without an order number it is
MSH-10 with the OBR and OBX set ids. The version is MSH-7 in milliseconds
combined with the status rank. The patient key is PID-3's ID (CX.1), from the
first repetition or the one whose assigning authority (CX.4) and identifier
type (CX.5) match ``CXRWATCH_CLINICAL_HL7_ASSIGNING_AUTHORITY`` and
``CXRWATCH_CLINICAL_HL7_IDENTIFIER_TYPE``.
"""

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import hl7
from hl7.util import unescape

from cxrwatch.clinical.answers import Answer, CodedAnswer, Quantity
from cxrwatch.clinical.codes import CodeMatch, FeatureCodes
from cxrwatch.clinical.demographics import (
    birth_date_from_text,
    check_birth_date,
    sex_from_code,
)
from cxrwatch.clinical.measurements import feature_value
from cxrwatch.clinical.reading import PatientReading, Reading, version
from cxrwatch.clinical.times import FacilityClock
from cxrwatch.core.errors import InvalidInput, MissingPatient, UnsupportedInput
from cxrwatch.core.observations import ObservationStatus, StoredObservation

logger = logging.getLogger(__name__)

MLLP_START, MLLP_END = b"\x0b", b"\x1c"
_BOM = b"\xef\xbb\xbf"
_BLANKS = b" \t\r\n"
STANDARD_DELIMITERS = "MSH|^~\\&|"
RESULT_STATUSES: dict[str, ObservationStatus] = {
    "P": "preliminary",
    "R": "preliminary",
    "S": "preliminary",
    "F": "final",
    "C": "corrected",
    "A": "amended",
    "D": "entered-in-error",
    "W": "entered-in-error",
}
NO_RESULT_STATUSES = {
    "X": "result-not-obtained",
    "I": "result-pending",
    "N": "result-not-asked",
    "O": "result-pending",
    "U": "status-only",
}
CODED_TYPES = frozenset({"CWE", "CE", "CNE", "CF"})
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_TEXT_NUMBER = re.compile(r"\s*(<=|>=|<|>|=)?\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# python-hl7's containers index through a Python-level __getitem__ (for slices);
# an integer index is the plain list's, at a fraction of the cost.
_item = list.__getitem__
_MS = timedelta(milliseconds=1)


class Hl7Reader:
    """Reads one HL7 v2 message per record."""

    def __init__(
        self,
        codes: FeatureCodes,
        clock: FacilityClock,
        *,
        assigning_authority: str | None = None,
        identifier_type: str | None = None,
    ) -> None:
        self._codes = codes
        self._clock = clock
        self._authority = assigning_authority
        self._identifier_type = identifier_type

    def read(self, raw: bytes) -> Reading:
        """Read a message; refuse it whole if any mapped value is bad.

        Raises
        ------
        InvalidInput
            If the message cannot be parsed, lacks a required field, or any OBX
            that maps to a feature is refused (each is named).
        UnsupportedInput
            For a batch or a message type other than ORU and ADT.
        MissingPatient
            If a value has no usable patient identifier.
        """
        message = message_segments(raw)
        msh = _item(message, 0)
        kind = _field(msh, 9)
        if kind not in ("ORU", "ADT"):
            event = _field(msh, 9, component=2)
            raise UnsupportedInput(f"MSH-9 {kind}^{event} is not read; send ORU or ADT")
        header = _Header.read(msh, self._clock)
        reading = Reading("hl7v2", header.message_id)
        self._segments(message, header, kind == "ORU", reading)
        if not reading.patients and not reading.refusals:
            reading.refusals.append(MissingPatient(f"the {kind} message has no PID"))
        reading.raise_refusals()
        return reading

    def _segments(
        self, message: Any, header: "_Header", results: bool, reading: Reading
    ) -> None:
        subject = _Subject(None, MissingPatient("no PID segment precedes the OBX"))
        order = _Order.none()
        seen: set[str] = set()
        for segment in message:
            name = _field(segment, 0)
            if name == "PID":
                subject = self._patient(segment, header, reading)
            elif name == "OBR":
                order = _Order.read(segment, self._clock)
            elif name == "OBX" and results:
                self._observation(segment, header, order, subject, seen, reading)

    def _patient(self, pid: Any, header: "_Header", reading: Reading) -> "_Subject":
        try:
            key = self._patient_key(pid)
            birth_date = birth_date_from_text(_field(pid, 7), "PID-7 birth date")
            latest = self._clock.day_of(min(header.sent_at, datetime.now(UTC)))
            check_birth_date(birth_date, latest, "PID-7 birth date")
        except InvalidInput as exc:
            reading.refusals.append(exc)
            return _Subject(None, exc, reported=True)
        patient = reading.patient(key)
        patient.birth_date = birth_date or patient.birth_date
        patient.sex = sex_from_code(_field(pid, 8)) or patient.sex
        return _Subject(patient, None)

    def _patient_key(self, pid: Any) -> str:
        for repetition, value in _patient_ids(pid):
            if self._wanted(pid, repetition):
                return value
        wanted = ""
        if self._authority or self._identifier_type:
            wanted = (
                f" of assigning authority {self._authority!r} and type "
                f"{self._identifier_type!r} (CXRWATCH_CLINICAL_HL7_ASSIGNING_"
                "AUTHORITY, CXRWATCH_CLINICAL_HL7_IDENTIFIER_TYPE)"
            )
        raise MissingPatient(f"PID-3 holds no patient identifier{wanted}")

    def _wanted(self, pid: Any, repetition: int) -> bool:
        if self._authority is not None:
            namespace = _field(pid, 3, repetition, component=4)
            universal = _field(pid, 3, repetition, component=4, subcomponent=2)
            if self._authority not in (namespace, universal):
                return False
        if self._identifier_type is not None:
            return _field(pid, 3, repetition, component=5) == self._identifier_type
        return True

    def _observation(
        self,
        obx: Any,
        header: "_Header",
        order: "_Order",
        subject: "_Subject",
        seen: set[str],
        reading: Reading,
    ) -> None:
        set_id = _field(obx, 1)
        label = f"OBX {set_id or '?'}"
        match = self._codes.match(
            [
                (_field(obx, 3, component=3), _field(obx, 3)),
                (_field(obx, 3, component=6), _field(obx, 3, component=4)),
            ]
        )
        if match is None:
            reading.ignored["unmapped-code"] += 1
            return
        what = f"{label} ({match.label} → {match.feature.name})"
        flag = _field(obx, 11).upper()
        if flag in NO_RESULT_STATUSES:
            reading.ignored[NO_RESULT_STATUSES[flag]] += 1
            return
        if flag not in RESULT_STATUSES:
            reading.refusals.append(
                InvalidInput(
                    f"{what}: OBX-11 result status {flag!r} is not one of "
                    f"{', '.join(RESULT_STATUSES)}"
                )
            )
            return
        patient = subject.patient
        if patient is None:
            if not subject.reported:
                reading.refusals.append(MissingPatient(f"{what}: {subject.problem}"))
                subject.reported = True
            return
        status = RESULT_STATUSES[flag]
        try:
            value = (
                None if status == "entered-in-error" else self._value(obx, match, what)
            )
            effective = self._clock.hl7_time(_field(obx, 14), f"{label} OBX-14")
        except InvalidInput as exc:
            reading.refusals.append(exc)
            return
        if value is None and status != "entered-in-error":
            reading.ignored["no-value"] += 1
            return
        source = order.source_id(header, match, _field(obx, 4), set_id)
        if source in seen:
            source = f"{source}#{set_id}"
        seen.add(source)
        patient.observations.append(
            StoredObservation(
                feature=match.feature.name,
                value=value,
                unit=match.feature.unit,
                effective_at=effective or order.observed_at or header.sent_at,
                source_id=source,
                version=version(header.sent_ms, status),
                status=status,
            )
        )

    def _value(self, obx: Any, match: CodeMatch, what: str) -> float | None:
        answer = _answer(obx, what)
        if answer is None:
            return None
        return feature_value(match.feature, answer, what)


@dataclass
class _Subject:
    """The patient of the OBX segments that follow a PID, or why there is none."""

    patient: PatientReading | None
    problem: InvalidInput | None
    reported: bool = False


class _Header:
    """What MSH says about the message as a whole."""

    def __init__(self, sender: str, control_id: str, sent_at: datetime) -> None:
        self.sender = sender
        self.control_id = control_id
        self.sent_at = sent_at
        self.sent_ms = (sent_at - _EPOCH) // _MS
        self.message_id = f"hl7:{sender}|{control_id}"

    @classmethod
    def read(cls, msh: Any, clock: FacilityClock) -> "_Header":
        control_id = _field(msh, 10)
        if not control_id:
            raise InvalidInput("MSH-10 message control id is empty")
        sent_at = clock.hl7_time(_field(msh, 7), "MSH-7")
        if sent_at is None:
            raise InvalidInput("MSH-7 date/time of message is empty")
        return cls(f"{_field(msh, 3)}|{_field(msh, 4)}", control_id, sent_at)


class _Order:
    """The OBR enclosing the OBX segments that follow it."""

    def __init__(self, number: str, set_id: str, observed_at: datetime | None) -> None:
        self.number = number
        self.set_id = set_id
        self.observed_at = observed_at

    @classmethod
    def none(cls) -> "_Order":
        return cls("", "", None)

    @classmethod
    def read(cls, obr: Any, clock: FacilityClock) -> "_Order":
        number = _field(obr, 3) or _field(obr, 2)
        return cls(number, _field(obr, 1), clock.hl7_time(_field(obr, 7), "OBR-7"))

    def source_id(
        self, header: _Header, match: CodeMatch, sub_id: str, set_id: str
    ) -> str:
        if self.number:
            return f"hl7:{header.sender}|{self.number}|{match.code}|{sub_id}"
        return f"hl7:{header.sender}|{header.control_id}|{self.set_id}|{set_id}"


def message_segments(raw: bytes) -> list[Any]:
    """The segments of one message, as :class:`Hl7Reader` reads them.

    Raises
    ------
    InvalidInput
        If the record is not text, does not start with MSH, has unusable
        delimiters or does not parse.
    UnsupportedInput
        If the record holds more than one message.
    """
    return _parse(_text(raw))


def first_patient_id(segments: list[Any]) -> str | None:
    """The first ID (CX.1) in PID-3 of the first PID, as keyed without
    ``CXRWATCH_CLINICAL_HL7_*`` settings; ``None`` without one."""
    for segment in segments:
        if _field(segment, 0) == "PID":
            return next((value for _, value in _patient_ids(segment)), None)
    return None


def _patient_ids(pid: Any) -> Iterator[tuple[int, str]]:
    """PID-3's non-empty IDs (CX.1), with their repetition numbers."""
    for repetition in range(1, _repetitions(pid, 3) + 1):
        if value := _field(pid, 3, repetition):
            yield repetition, value


def _text(raw: bytes) -> str:
    body = raw.removeprefix(_BOM).strip(_BLANKS)
    if body.startswith(MLLP_START):  # 0x0B, which bytes.strip() would also eat
        body = body[1:].rstrip(_BLANKS).removesuffix(MLLP_END)
        body = body.removeprefix(_BOM).strip(_BLANKS)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        first_line = body.split(b"\r", 1)[0].split(b"\n", 1)[0]
        if b"8859/1" not in first_line:
            raise InvalidInput(
                f"the message is not UTF-8 ({exc.reason} at byte {exc.start}) and "
                "MSH-18 does not declare 8859/1"
            ) from exc
        text = body.decode("latin-1")
    return text.replace("\r\n", "\r").replace("\n", "\r").strip()


def _parse(text: str) -> list[Any]:
    """The message's segments: split directly when it uses the standard
    delimiters, else parsed by python-hl7."""
    if not text.startswith("MSH"):
        raise InvalidInput(
            f"an HL7 v2 message starts with MSH, this one with {text[:3]!r}"
        )
    if text.count("\rMSH") > 0:
        raise UnsupportedInput(
            f"the record holds {text.count(chr(13) + 'MSH') + 1} messages; "
            "send one HL7 message per record"
        )
    if text.startswith(STANDARD_DELIMITERS):
        return split_segments(text)
    _check_delimiters(text)
    try:
        return list(hl7.parse(text))
    except (hl7.ParseException, IndexError, ValueError) as exc:
        raise InvalidInput(f"HL7 v2 does not parse: {exc}") from exc


def _check_delimiters(text: str) -> None:
    """Refuse an MSH-1 or MSH-2 from which python-hl7 would split nonsense.

    MSH-2 holds the component, repetition, escape and subcomponent characters
    (HL7 2.7 adds truncation as a fifth): all different, none the field
    separator (MSH-1), a letter, a digit or white space.
    """
    separator = text[3:4]
    if not separator or separator.isalnum() or separator.isspace():
        raise InvalidInput(
            f"MSH-1 field separator {_quoted(separator)} is not usable: it must be "
            "one character other than a letter, digit or white space, usually |"
        )
    encoding = re.split(f"[{re.escape(separator)}\r]", text[4:], maxsplit=1)[0]
    problems = [
        f"{_quoted(char)} is a letter, digit or white space"
        for char in dict.fromkeys(encoding)
        if char.isalnum() or char.isspace()
    ]
    if len(encoding) not in (4, 5):
        count = f"{len(encoding)} character{'' if len(encoding) == 1 else 's'}"
        problems.insert(0, f"{count}, not 4 (or 5 with truncation)")
    repeated = [char for char in dict.fromkeys(encoding) if encoding.count(char) > 1]
    if repeated:
        problems.append(f"{', '.join(map(_quoted, repeated))} repeated")
    if problems:
        raise InvalidInput(
            f"MSH-2 encoding characters {_quoted(encoding)} are not usable: "
            f"{'; '.join(problems)}. MSH-2 holds the component, repetition, escape "
            "and subcomponent characters, all different, usually ^~\\&"
        )


def _quoted(text: str) -> str:
    """Text in quotes as it reads in the message; escaped only if unprintable."""
    return f"'{text}'" if text.isprintable() else repr(text)


class SplitSegment(list[str]):
    """A segment's fields as text, field n at index n (MSH-1 at index 1)."""

    esc = "\\"
    separators = "\r|~^&"


def split_segments(text: str) -> list[Any]:
    """Segments of a message with the standard delimiters, split like python-hl7
    splits them (``tests/unit/clinical/test_clinical_hl7v2.py`` compares every
    field, repetition, component and subcomponent read with the library's)."""
    segments: list[Any] = []
    for line in text.split("\r"):
        if not line.strip():
            continue
        fields = line.split("|")
        if fields[0] == "MSH":
            fields = ["MSH", "|", *fields[1:]]
        segments.append(SplitSegment(fields))
    return segments


def _field(
    segment: Any,
    number: int,
    repetition: int = 1,
    *,
    component: int = 1,
    subcomponent: int = 1,
) -> str:
    """A field, component or subcomponent, unescaped; "" when absent.

    Walks python-hl7's parse tree by index with the rules of its
    ``extract_field`` (a path that ends above a leaf takes the first child; one
    that runs past a leaf is absent), which builds an accessor per call and cost
    a third of the reading time; unescaping is the library's.
    """
    if number >= len(segment):
        return ""
    if type(segment) is SplitSegment:
        return _split_field(segment, number, repetition, component, subcomponent)
    node = _item(segment, number)
    for index in (repetition, component, subcomponent):
        if isinstance(node, str):
            if index != 1:
                return ""
        elif index > len(node):
            return ""
        else:
            node = _item(node, index - 1)
    while not isinstance(node, str):
        node = _item(node, 0) if node else ""
    if segment.esc in node:
        node = unescape(segment, node)
    return str(node).strip()


def _repetitions(segment: Any, number: int) -> int:
    """How many repetitions a field holds (an empty field holds one)."""
    if number >= len(segment):
        return 0
    if type(segment) is SplitSegment:
        return int(_item(segment, number).count("~")) + 1
    return len(_item(segment, number))


def _split_field(
    segment: SplitSegment, number: int, repetition: int, component: int, sub: int
) -> str:
    value = _item(segment, number)
    for separator, index in (("~", repetition), ("^", component), ("&", sub)):
        if separator in value:
            parts = value.split(separator)
            if index > len(parts):
                return ""
            value = parts[index - 1]
        elif index != 1:
            return ""
    if "\\" in value:
        value = unescape(segment, value)
    return value.strip()


def _answer(obx: Any, what: str) -> Answer | None:
    kind = _field(obx, 2).upper()
    raw = _field(obx, 5)
    if kind in CODED_TYPES:
        if not raw:
            return None
        codings = (
            (_field(obx, 5, component=3), raw),
            (_field(obx, 5, component=6), _field(obx, 5, component=4)),
        )
        return CodedAnswer(codings, _field(obx, 5, component=2) or None)
    if kind == "SN":
        return _structured_numeric(obx, what)
    if not raw:
        return None
    if kind == "NM":
        if _NUMBER.fullmatch(raw) is None:
            raise InvalidInput(f"{what}: NM value {raw!r} is not a number")
        return Quantity(float(raw), _unit(obx), _censored(obx))
    if kind == "ST":
        match = _TEXT_NUMBER.fullmatch(raw)
        if match is None:
            raise InvalidInput(f"{what}: ST value {raw!r} is not a number")
        comparator = match[1] if match[1] != "=" else None
        return Quantity(float(match[2]), _unit(obx), comparator or _censored(obx))
    raise InvalidInput(f"{what}: value type {kind or 'missing'!r} gives no number")


def _structured_numeric(obx: Any, what: str) -> Quantity | None:
    comparator = _field(obx, 5, component=1)
    number = _field(obx, 5, component=2)
    separator = _field(obx, 5, component=3)
    second = _field(obx, 5, component=4)
    if not (comparator or number or separator or second):
        return None
    if separator or second:
        raise InvalidInput(
            f"{what}: SN value {comparator}^{number}^{separator}^{second} is a range "
            "or ratio, not one number"
        )
    if comparator not in ("", "=", "<", ">", "<=", ">="):
        raise InvalidInput(
            f"{what}: SN comparator {comparator!r} is not one of < > <= >= ="
        )
    if _NUMBER.fullmatch(number) is None:
        raise InvalidInput(f"{what}: SN number {number!r} is not a number")
    censored = None if comparator in ("", "=") else comparator
    return Quantity(float(number), _unit(obx), censored)


def _unit(obx: Any) -> str | None:
    return _field(obx, 6) or _field(obx, 6, component=2) or None


def _censored(obx: Any) -> str | None:
    repetitions = _repetitions(obx, 8)
    flags = {_field(obx, 8, r) for r in range(1, repetitions + 1)}
    if "<" in flags:
        return "<"
    if ">" in flags:
        return ">"
    return None
