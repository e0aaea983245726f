"""Telling FHIR JSON from HL7 v2: the content-type header first, then the bytes."""

import pytest
from cxrwatch.clinical.formats import source_format
from cxrwatch.core.errors import InvalidInput


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (b"application/fhir+json", "fhir-r4"),
        (b"application/fhir+json; fhirVersion=4.0", "fhir-r4"),
        (b"x-application/hl7-v2+er7", "hl7v2"),
        (b"application/hl7-v2", "hl7v2"),
    ],
)
def test_the_header_decides(content_type, expected):
    # The body says the opposite: the declared type wins.
    body = b"MSH|^~\\&|" if expected == "fhir-r4" else b"{}"
    assert source_format([("content-type", content_type)], body) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"resourceType": "Observation"}', "fhir-r4"),
        (b'\xef\xbb\xbf  {"resourceType": "Bundle"}', "fhir-r4"),
        (b"MSH|^~\\&|A", "hl7v2"),
        (b"\xef\xbb\xbfMSH|^~\\&|A", "hl7v2"),
        (b"\x0bMSH|^~\\&|A\x1c\r", "hl7v2"),
    ],
)
def test_without_a_header_the_bytes_decide(body, expected):
    assert source_format([("ce_type", b"x")], body) == expected
    assert source_format([("content-type", b"text/plain")], body) == expected


def test_an_empty_record_is_refused():
    with pytest.raises(InvalidInput, match="empty"):
        source_format(None, b"   ")


def test_neither_format_is_refused():
    with pytest.raises(InvalidInput, match="neither FHIR JSON nor HL7 v2"):
        source_format(None, b"<Observation/>")
