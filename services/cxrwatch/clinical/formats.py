"""Telling FHIR JSON from HL7 v2 in a record of ``ehr.observations.v1``.

The producer's ``content-type`` header decides: ``application/fhir+json`` (or
``application/json``, parameters such as ``fhirVersion`` allowed) is FHIR;
``x-application/hl7-v2+er7`` (or ``application/hl7-v2``,
``application/hl7-v2+er7``) is HL7 v2. Without the header, or with another
value, the first bytes decide: ``{`` is FHIR JSON, ``MSH`` or an MLLP start
byte is HL7 v2 (after any byte-order mark and white space).
"""

from collections.abc import Iterable

from cxrwatch.clinical.reading import SourceFormat
from cxrwatch.core.errors import InvalidInput

FHIR_CONTENT_TYPES = frozenset({"application/fhir+json", "application/json"})
HL7_CONTENT_TYPES = frozenset(
    {"x-application/hl7-v2+er7", "application/hl7-v2", "application/hl7-v2+er7"}
)
_BOM = b"\xef\xbb\xbf"


def source_format(
    headers: Iterable[tuple[str, bytes]] | None, value: bytes
) -> SourceFormat:
    """Return the format of a record, by its content type, else by its content.

    Raises
    ------
    InvalidInput
        If the record is empty or looks like neither format.
    """
    declared = _content_type(headers)
    if declared in FHIR_CONTENT_TYPES:
        return "fhir-r4"
    if declared in HL7_CONTENT_TYPES:
        return "hl7v2"
    start = value.removeprefix(_BOM).lstrip()[:3]
    if start.startswith(b"{"):
        return "fhir-r4"
    if start == b"MSH" or start.startswith(b"\x0b"):
        return "hl7v2"
    if not start:
        raise InvalidInput("the record is empty")
    raise InvalidInput(
        f"the record is neither FHIR JSON nor HL7 v2 (content-type {declared!r}, "
        f"starts with {start!r})"
    )


def _content_type(headers: Iterable[tuple[str, bytes]] | None) -> str | None:
    for name, raw in headers or ():
        if name.lower() == "content-type":
            return raw.decode("latin-1").split(";", 1)[0].strip().lower()
    return None
