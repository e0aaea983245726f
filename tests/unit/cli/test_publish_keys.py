"""The record key the CLI derives from each kind of file, and what it refuses."""

import json

import pytest
from cxrwatch.cli.publish import patient_key_of
from cxrwatch.core.errors import InvalidInput

ORU = (
    "MSH|^~\\&|LIS|H|CXRWATCH|H|20260101120000||ORU^R01^ORU_R01|7|P|2.5.1\n"
    "PID|1||CXR-77^^^GENHOSP^MR||Doe^Jo\n"
    "OBX|1|NM|8867-4^HR^LN||80|/min|||||F\n"
)


def test_hl7_key_is_pid3_id_with_any_segment_separator() -> None:
    for separator in ("\r", "\n", "\r\n"):
        body = ("\ufeff" + ORU.replace("\n", separator)).encode()
        assert patient_key_of("hl7", body) == "CXR-77"


def test_hl7_key_skips_an_empty_first_identifier() -> None:
    body = ORU.replace("||CXR-77^^^GENHOSP^MR|", "||~CXR-78^^^GENHOSP^MR|").encode()
    assert patient_key_of("hl7", body) == "CXR-78"


def test_hl7_key_with_other_usable_delimiters() -> None:
    body = ORU.replace("^", "!").replace("MSH|!~\\&|", "MSH|!~\\&#|").encode()
    assert patient_key_of("hl7", body) == "CXR-77"


def test_fhir_key_from_subject_and_from_a_bundle() -> None:
    observation = {
        "resourceType": "Observation",
        "subject": {"reference": "Patient/P9"},
    }
    bundle = {"resourceType": "Bundle", "entry": [{"resource": observation}]}
    assert patient_key_of("fhir", json.dumps(observation).encode()) == "P9"
    assert patient_key_of("fhir", json.dumps(bundle).encode()) == "P9"


def test_files_that_parse_but_name_no_patient_are_keyed_unknown() -> None:
    assert patient_key_of("hl7", b"MSH|^~\\&|x\rOBX|1") == "unknown"
    assert patient_key_of("fhir", b'{"resourceType": "Observation"}') == "unknown"
    assert patient_key_of("fhir", b'{"resourceType": "Bundle", "entry": 3}') == (
        "unknown"
    )
    assert patient_key_of("dicom", b"\x00" * 10) == "unknown"


def test_hl7_with_unusable_encoding_characters_is_refused_not_keyed() -> None:
    # python-hl7 read this message's patient as 'T'.
    body = ORU.replace("MSH|^~\\&|", "MSH|##|").encode()
    with pytest.raises(InvalidInput) as refused:
        patient_key_of("hl7", body)
    assert str(refused.value).startswith(
        "MSH-2 encoding characters '##' are not usable: 2 characters, not 4"
    )


@pytest.mark.parametrize(
    ("kind", "body", "reason"),
    [
        ("hl7", b"PID|1||CXR-77", "an HL7 v2 message starts with MSH"),
        ("hl7", (ORU + ORU).encode(), "the record holds 2 messages"),
        ("fhir", b"[" * 100_000, "JSON nested deeper than 100 levels"),
        ("fhir", b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "nested deeper"),
        ("fhir", b'{"resourceType": "Observation"', "not valid JSON"),
        ("fhir", b"[1, 2]", "a FHIR resource is a JSON object"),
    ],
    ids=["no-msh", "batch", "deep-array", "deep-object", "truncated", "array"],
)
def test_files_that_do_not_parse_are_refused(kind, body, reason) -> None:
    with pytest.raises(InvalidInput, match=reason):
        patient_key_of(kind, body)
