"""The record key the CLI derives from each kind of file."""

import json

from cxrwatch.cli.publish import patient_key_of

ORU = (
    "MSH|^~\\&|LIS|H|CXRWATCH|H|20260101120000||ORU^R01^ORU_R01|7|P|2.5.1\n"
    "PID|1||CXR-77^^^GENHOSP^MR||Doe^Jo\n"
    "OBX|1|NM|8867-4^HR^LN||80|/min|||||F\n"
)


def test_hl7_key_is_pid3_id_with_any_segment_separator() -> None:
    for separator in ("\r", "\n", "\r\n"):
        body = ("\ufeff" + ORU.replace("\n", separator)).encode()
        assert patient_key_of("hl7", body) == "CXR-77"


def test_fhir_key_from_subject_and_from_a_bundle() -> None:
    observation = {
        "resourceType": "Observation",
        "subject": {"reference": "Patient/P9"},
    }
    bundle = {"resourceType": "Bundle", "entry": [{"resource": observation}]}
    assert patient_key_of("fhir", json.dumps(observation).encode()) == "P9"
    assert patient_key_of("fhir", json.dumps(bundle).encode()) == "P9"


def test_unreadable_files_are_keyed_unknown_not_refused() -> None:
    assert patient_key_of("hl7", b"MSH|^~\\&|x\rOBX|1") == "unknown"
    assert patient_key_of("fhir", b"[" * 100_000) == "unknown"
    assert patient_key_of("dicom", b"\x00" * 10) == "unknown"
