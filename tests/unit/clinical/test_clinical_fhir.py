"""FHIR R4: the specification's examples, the known failing inputs, malformed input."""

import json
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from cxrwatch.clinical.fhir import FhirReader
from cxrwatch.core.errors import InvalidInput, MissingPatient, UnsupportedInput

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def observation(code: str, quantity: dict[str, Any] | None = None, **fields: Any):
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": f"obs-{code}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2021-03-09T14:30:00Z",
    }
    if quantity is not None:
        resource["valueQuantity"] = quantity
    resource.update(fields)
    return resource


def ucum(value: float, code: str) -> dict[str, Any]:
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def read(reader: FhirReader, resource: dict[str, Any]):
    return reader.read(json.dumps(resource).encode())


def refusal(reader: FhirReader, resource: dict[str, Any], in_bundle: bool) -> str:
    """Why a resource is refused, read alone or in a Bundle (a plain Observation
    alone takes the quick reading, in a Bundle the library's); it must be
    InvalidInput."""
    if in_bundle:
        resource = bundle("collection", {"resource": resource})
    with pytest.raises(InvalidInput) as refused:
        read(reader, resource)
    assert type(refused.value) is InvalidInput
    return str(refused.value)


def only(reading):
    [patient] = reading.patients.values()
    [stored] = patient.observations
    return stored


def sample(shared_data, name: str) -> bytes:
    return (shared_data / "fhir_r4" / name).read_bytes()


# The specification's examples -------------------------------------------------


def test_sat_o2_example(fhir, shared_data):
    stored = only(fhir.read(sample(shared_data, "Observation-satO2.json")))
    assert (stored.feature, stored.value, stored.unit) == ("spo2", 95.0, "%")
    assert stored.effective_at == datetime(2014, 12, 5, 8, 30, 10, tzinfo=UTC)
    assert stored.source_id == "fhir:Observation/satO2"


@pytest.mark.parametrize(
    ("name", "feature", "expected"),
    [
        ("Observation-heart-rate.json", "heart_rate", 44.0),
        ("Observation-respiratory-rate.json", "resp_rate", 26.0),
        ("Observation-body-temperature.json", "temperature", 36.5),
    ],
)
def test_vital_sign_examples(fhir, shared_data, name, feature, expected):
    reading = fhir.read(sample(shared_data, name))
    assert list(reading.patients) == ["example"]
    stored = only(reading)
    assert (stored.feature, stored.value) == (feature, expected)
    # "1999-07-02" alone: the end of that day in New York (EDT, -4).
    assert stored.effective_at == datetime(1999, 7, 3, 3, 59, 59, 999000, tzinfo=UTC)


def test_blood_pressure_panel_gives_its_systolic_component(fhir, shared_data):
    reading = fhir.read(sample(shared_data, "Observation-blood-pressure.json"))
    stored = only(reading)
    assert (stored.feature, stored.value, stored.unit) == (
        "systolic_bp",
        107.0,
        "mm[Hg]",
    )
    assert stored.source_id == "fhir:Observation/blood-pressure#8480-6"
    assert reading.ignored["unmapped-code"] == 2  # the panel code and the diastolic


def test_cancelled_panel_is_ignored_not_refused(fhir, shared_data):
    reading = fhir.read(sample(shared_data, "Observation-blood-pressure-cancel.json"))
    assert not reading.usable
    assert reading.ignored["status-cancelled"] == 1


def test_entered_in_error_example_is_a_withdrawal(fhir, shared_data):
    stored = only(fhir.read(sample(shared_data, "Observation-f202.json")))
    assert (stored.feature, stored.status, stored.value) == (
        "temperature",
        "entered-in-error",
        None,
    )
    assert stored.effective_at == datetime(2013, 4, 4, 12, 27, tzinfo=UTC)  # issued


def test_vitals_panel_without_values_has_nothing_usable(fhir, shared_data):
    reading = fhir.read(sample(shared_data, "Observation-vitals-panel.json"))
    assert not reading.usable
    assert reading.ignored["unmapped-code"] == 1


def test_lab_bundle_takes_times_from_its_panels(fhir, shared_data):
    reading = fhir.read(sample(shared_data, "Bundle-ghp.json"))
    observations = {o.feature: o for o in reading.patients["pat2"].observations}
    assert {f: o.value for f, o in observations.items()} == {
        "wbc": 4.6,
        "lymphocytes": 0.9,
        "ldh": 131.0,
    }
    panel_time = datetime(2015, 8, 16, 6, 40, 17, tzinfo=UTC)
    assert {o.effective_at for o in observations.values()} == {panel_time}


# Known failing inputs --------------------------------------------------------


def test_time_without_offset_is_read_in_new_york_winter_and_summer(fhir):
    for day, hour in (("2021-03-09", 19), ("2021-03-15", 18)):
        resource = observation("8867-4", ucum(80, "/min"))
        resource["effectiveDateTime"] = f"{day}T14:30:00"
        stored = only(read(fhir, resource))
        assert stored.effective_at == datetime.fromisoformat(
            f"{day}T{hour}:30:00+00:00"
        )


def test_fahrenheit_temperature(fhir):
    stored = only(read(fhir, observation("8310-5", ucum(101.3, "[degF]"))))
    assert stored.value == pytest.approx(38.5, abs=0.05)
    assert stored.unit == "Cel"


def test_crp_in_mg_per_dl(fhir):
    stored = only(read(fhir, observation("1988-5", ucum(2.4, "mg/dL"))))
    assert stored.value == pytest.approx(24.0)


def test_spo2_fraction_with_percent_is_refused_and_with_unit_1_is_stored(fhir):
    with pytest.raises(InvalidInput, match=r"0\.91 %.*fraction"):
        read(fhir, observation("59408-5", ucum(0.91, "%")))
    assert only(read(fhir, observation("59408-5", ucum(0.91, "1")))).value == 91.0


# Statuses, versions, values ----------------------------------------------------


def test_amended_outranks_final_at_the_same_version(fhir):
    final = only(read(fhir, observation("8867-4", ucum(80, "/min"))))
    amended = only(
        read(fhir, observation("8867-4", ucum(84, "/min"), status="amended"))
    )
    assert final.source_id == amended.source_id
    assert amended.version > final.version


def test_version_id_orders_versions(fhir):
    v2 = observation("8867-4", ucum(80, "/min"), meta={"versionId": "2"})
    v3 = observation("8867-4", ucum(80, "/min"), meta={"versionId": "3"})
    assert only(read(fhir, v3)).version > only(read(fhir, v2)).version


def test_unknown_status_is_refused(fhir):
    with pytest.raises(InvalidInput, match="'done' is not an Observation status"):
        read(fhir, observation("8867-4", ucum(80, "/min"), status="done"))


def test_effective_period_uses_its_end(fhir):
    resource = observation("8867-4", ucum(80, "/min"))
    del resource["effectiveDateTime"]
    resource["effectivePeriod"] = {
        "start": "2021-03-09T14:00:00Z",
        "end": "2021-03-09T14:30:00Z",
    }
    assert only(read(fhir, resource)).effective_at == datetime(
        2021, 3, 9, 14, 30, tzinfo=UTC
    )


def heart_rate_over(start: str, end: str) -> dict[str, Any]:
    resource = observation("8867-4", ucum(80, "/min"))
    del resource["effectiveDateTime"]
    resource["effectivePeriod"] = {"start": start, "end": end}
    return resource


@pytest.mark.parametrize("in_bundle", [False, True])
@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2021-03-09T15:00:00+01:00", "2021-03-09T13:59:59+00:00"),
        ("2021-03-10", "2021-03-09"),
    ],
)
def test_a_period_that_ends_before_it_starts_is_refused(fhir, start, end, in_bundle):
    reason = refusal(fhir, heart_rate_over(start, end), in_bundle)
    assert f"effectivePeriod ends at {end}, before it starts at {start}" in reason


@pytest.mark.parametrize(
    ("start", "end", "stored_at"),
    [
        # 15:00 at +02:00 is 13:00 UTC, an hour before the end.
        ("2021-03-09T15:00:00+02:00", "2021-03-09T14:00:00Z", (2021, 3, 9, 14)),
        ("2021-03-09T14:00:00Z", "2021-03-09T14:00:00Z", (2021, 3, 9, 14)),
        # A day holds every time of it: 10:00 is within 2021-03-09.
        ("2021-03-09", "2021-03-09T10:00:00Z", (2021, 3, 9, 10)),
    ],
)
def test_a_period_that_ends_when_or_after_it_starts_is_read(
    fhir, start, end, stored_at
):
    stored = only(read(fhir, heart_rate_over(start, end)))
    assert stored.effective_at == datetime(*stored_at, tzinfo=UTC)


def test_oxygen_delivery_as_a_codeable_concept(fhir):
    resource = observation("3151-8")
    resource["valueCodeableConcept"] = {
        "coding": [{"system": "http://snomed.info/sct", "code": "371907003"}]
    }
    stored = only(read(fhir, resource))
    assert (stored.feature, stored.value) == ("on_oxygen", 1.0)


def test_local_code_maps_by_configuration(fhir):
    resource = observation("x", ucum(72, "/min"))
    resource["code"] = {"coding": [{"system": "http://acme.org/vitals", "code": "HR"}]}
    assert only(read(fhir, resource)).feature == "heart_rate"


def test_only_unmapped_codes_is_not_usable(fhir):
    reading = read(fhir, observation("2951-2", ucum(140, "mmol/L")))
    assert not reading.usable
    assert reading.ignored["unmapped-code"] == 1


def test_patient_gives_demographics(fhir):
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "gender": "female",
        "birthDate": "1950-02-01",
    }
    reading = read(fhir, patient)
    assert reading.patients["p1"].sex == "F"
    assert str(reading.patients["p1"].birth_date) == "1950-02-01"


@pytest.mark.parametrize("in_bundle", [False, True])
def test_a_birth_date_in_the_future_is_refused_without_showing_it(fhir, in_bundle):
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "2999-01-01"}
    reason = refusal(fhir, patient, in_bundle)
    assert "Patient/p1" in reason
    assert "birthDate is after " in reason
    assert ", the day of the message: nobody is born later than that" in reason
    assert "2999" not in reason


def test_a_patient_without_a_birth_date_keeps_the_one_given_before(fhir):
    dated = {"resourceType": "Patient", "id": "p1", "birthDate": "1950-02-01"}
    undated = {"resourceType": "Patient", "id": "p1", "gender": "female"}
    message = bundle("collection", {"resource": dated}, {"resource": undated})
    assert read(fhir, message).patients["p1"].birth_date == date(1950, 2, 1)


def test_a_birth_date_of_today_is_read(fhir):
    today = datetime.now(ZoneInfo("America/New_York")).date()
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": str(today)}
    # Should midnight pass meanwhile, the reader's today is later: still read.
    assert read(fhir, patient).patients["p1"].birth_date == today


def test_transaction_bundle_keys_patients_by_identifier(codes, new_york):
    reader = FhirReader(codes, new_york, identifier_system="urn:oid:1.2.3")
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-7"}],
        "birthDate": "1961-06-15",
    }
    obs = observation("8867-4", ucum(80, "/min"))
    obs["subject"] = {"reference": "urn:uuid:patient-1"}
    conditional = observation("9279-1", ucum(18, "/min"))
    conditional["subject"] = {"reference": "Patient?identifier=urn:oid:1.2.3|MRN-7"}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:patient-1",
                "resource": patient,
                "request": {"method": "POST", "url": "Patient"},
            },
            {"resource": obs, "request": {"method": "POST", "url": "Observation"}},
            {
                "resource": conditional,
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    reading = read(reader, bundle)
    assert list(reading.patients) == ["MRN-7"]
    mrn7 = reading.patients["MRN-7"]
    assert {o.feature for o in mrn7.observations} == {"heart_rate", "resp_rate"}
    assert str(mrn7.birth_date) == "1961-06-15"


@pytest.mark.parametrize("kind", ["batch", "collection", "searchset"])
def test_other_bundle_types_are_read(fhir, kind):
    bundle = {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [{"resource": observation("8867-4", ucum(80, "/min"))}],
    }
    assert only(read(fhir, bundle)).value == 80.0


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_entries_that_create_or_update_are_read(fhir, method):
    entry = {
        "resource": observation("8867-4", ucum(80, "/min")),
        "request": {"method": method, "url": "Observation/obs-8867-4"},
    }
    assert only(read(fhir, bundle("transaction", entry))).value == 80.0


@pytest.mark.parametrize("method", ["DELETE", "PATCH", "GET", "HEAD", "post"])
@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_an_entry_asking_for_anything_but_a_create_or_update_refuses_the_bundle(
    fhir, method, kind
):
    message = bundle(
        kind,
        {
            "resource": observation("9279-1", ucum(18, "/min")),
            "request": {"method": "POST", "url": "Observation"},
        },
        {
            "resource": observation("8867-4", ucum(80, "/min")),
            "request": {"method": method, "url": "Observation/obs-8867-4"},
        },
    )
    with pytest.raises(InvalidInput) as refused:
        read(fhir, message)
    assert type(refused.value) is InvalidInput
    assert str(refused.value).startswith(
        f"message refused, nothing stored; 1 problem: entry 2: request method "
        f"'{method}' is not accepted; only POST and PUT entries are stored"
    )


def test_a_delete_without_a_resource_refuses_the_bundle(fhir):
    message = bundle(
        "transaction",
        {
            "resource": observation("9279-1", ucum(18, "/min")),
            "request": {"method": "POST", "url": "Observation"},
        },
        {"request": {"method": "DELETE", "url": "Observation/obs-8867-4"}},
    )
    with pytest.raises(InvalidInput, match="entry 2: request method 'DELETE' is not"):
        read(fhir, message)


# Partial messages: refused whole, every problem named ------------------------


def test_one_bad_unit_in_a_bundle_refuses_the_whole_bundle(fhir):
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": observation("8867-4", ucum(80, "/min"))},
            {"resource": observation("1988-5", ucum(12, "furlongs"))},
            {"resource": observation("8310-5", ucum(60, "Cel"))},
        ],
    }
    with pytest.raises(InvalidInput) as refused:
        read(fhir, bundle)
    message = str(refused.value)
    assert "nothing stored; 2 problems" in message
    assert "entry 2 (Observation/obs-1988-5) (LOINC 1988-5 → crp)" in message
    assert "'furlongs'" in message
    assert "60 Cel, outside the physiological range" in message


def test_a_bad_unmapped_observation_does_not_refuse_the_message(fhir):
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": observation("8867-4", ucum(80, "/min"))},
            {"resource": observation("2951-2", ucum(140, "furlongs"))},
        ],
    }
    assert only(read(fhir, bundle)).value == 80.0


# Malformed input ---------------------------------------------------------------


def test_truncated_json(fhir):
    raw = json.dumps(observation("8867-4", ucum(80, "/min"))).encode()[:-20]
    with pytest.raises(InvalidInput, match="not valid JSON"):
        fhir.read(raw)


def test_wrong_resource_type_is_unsupported(fhir):
    with pytest.raises(UnsupportedInput, match="'Encounter' is not read here"):
        read(fhir, {"resourceType": "Encounter", "status": "finished", "class": {}})


def test_unknown_resource_type(fhir):
    with pytest.raises(InvalidInput, match="'Observaton' is not a FHIR resource"):
        read(fhir, {"resourceType": "Observaton"})


def test_json_that_is_not_an_object(fhir):
    with pytest.raises(InvalidInput, match="JSON object"):
        fhir.read(b"[1, 2]")


@pytest.mark.parametrize(
    "deep",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"resourceType": "Observation", "a": ' + b"[" * 500 + b"]" * 500 + b"}",
    ],
)
def test_json_nested_beyond_the_decoder_is_refused_by_its_depth(fhir, deep):
    # The first two made the JSON decoder raise RecursionError.
    with pytest.raises(InvalidInput) as refused:
        fhir.read(deep)
    assert str(refused.value) == (
        "JSON nested deeper than 100 levels of arrays and objects; "
        "no FHIR resource needs that many"
    )


def heart_rate_extended(count: int, innermost: dict[str, Any]) -> dict[str, Any]:
    """A heart rate with extensions nested ``count`` deep: 2 levels of JSON each."""
    extension = {"url": "http://example.org/x", **innermost}
    for _ in range(count - 1):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    return observation("8867-4", ucum(80, "/min"), extension=[extension])


def test_json_up_to_100_levels_is_read_and_one_more_is_refused(fhir):
    # The Observation is level 1, each extension 2 more: 49 extensions reach
    # 99, a CodeableConcept in the innermost 100; 50 extensions reach 101.
    at_limit = heart_rate_extended(49, {"valueCodeableConcept": {"text": "x"}})
    assert only(read(fhir, at_limit)).value == 80.0
    over = heart_rate_extended(50, {"valueString": "x"})
    with pytest.raises(InvalidInput, match="JSON nested deeper than 100 levels"):
        read(fhir, over)


def test_a_bundle_deeper_than_the_library_can_validate_is_refused(fhir):
    # 130 extensions in a Bundle made the FHIR library's validation exhaust
    # the stack (RecursionError) before the limit existed.
    resource = heart_rate_extended(130, {"valueString": "x"})
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": resource}],
    }
    with pytest.raises(InvalidInput, match="JSON nested deeper than 100 levels"):
        read(fhir, bundle)


def test_brackets_inside_strings_are_not_nesting(fhir):
    resource = observation("8867-4", ucum(80, "/min"))
    resource["code"]["text"] = '[{"\\' * 150
    assert only(read(fhir, resource)).value == 80.0


def test_a_bad_name_is_named_but_not_repeated(fhir):
    patient = {"resourceType": "Patient", "id": "p1", "name": "Jo Doe"}
    with pytest.raises(InvalidInput) as refused:
        read(fhir, patient)
    assert str(refused.value) == (
        "not a valid FHIR R4 Patient: name: Input should be a valid list "
        "(got a str, not shown)"
    )


def test_a_bad_subject_in_a_bundle_is_not_repeated(fhir):
    resource = observation("8867-4", ucum(80, "/min"), subject="Jo Doe")
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": resource}],
    }
    with pytest.raises(InvalidInput) as refused:
        read(fhir, bundle)
    assert "entry.0.resource.subject" in str(refused.value)
    assert "Jo" not in str(refused.value)


def test_a_bad_object_is_described_not_repeated(fhir):
    resource = observation("8867-4", ucum(80, "/min"), status={"by": "Jo Doe"})
    with pytest.raises(InvalidInput) as refused:
        read(fhir, resource)
    assert "status: Input should be a valid string (got a JSON object)" in str(
        refused.value
    )
    assert "Jo" not in str(refused.value)


def test_a_bad_time_is_repeated(fhir):
    resource = observation("8867-4", ucum(80, "/min"), effectiveDateTime="soon")
    with pytest.raises(InvalidInput, match=r"effectiveDateTime: .*\(got 'soon'\)"):
        read(fhir, resource)


def test_invalid_resource_names_the_field(fhir):
    resource = observation("8867-4", {"value": "eighty", "unit": "/min"})
    with pytest.raises(InvalidInput, match=r"valueQuantity\.value"):
        read(fhir, resource)


def test_missing_unit(fhir):
    with pytest.raises(InvalidInput, match="has no unit; expected /min"):
        read(fhir, observation("8867-4", {"value": 80}))


def test_value_string_is_not_a_quantity(fhir):
    resource = observation("8867-4", valueString="80")
    with pytest.raises(InvalidInput, match="valueString"):
        read(fhir, resource)


def test_observation_without_subject_is_missing_a_patient(fhir):
    resource = observation("8867-4", ucum(80, "/min"))
    del resource["subject"]
    with pytest.raises(MissingPatient, match="has no subject"):
        read(fhir, resource)


def test_subject_that_is_not_a_patient(fhir):
    resource = observation(
        "8867-4", ucum(80, "/min"), subject={"reference": "Group/g1"}
    )
    with pytest.raises(MissingPatient, match="not a Patient"):
        read(fhir, resource)


@pytest.mark.parametrize(
    ("reference", "host"),
    [
        ("http://evil.example/Patient/zq81", "evil.example"),
        ("https://ehr.example/other/Patient/zq81/_history/2", "ehr.example"),
        (
            "https://someone:secret@evil.example:8443/fhir/Patient/zq81",
            "evil.example:8443",
        ),
    ],
)
def test_a_patient_on_another_server_is_refused_naming_its_host(
    codes, new_york, reference, host
):
    reader = FhirReader(codes, new_york, server_bases=["https://ehr.example/fhir"])
    resource = observation("8867-4", ucum(80, "/min"), subject={"reference": reference})
    with pytest.raises(MissingPatient) as refused:
        read(reader, resource)
    reason = str(refused.value)
    assert f"subject is a Patient on the FHIR server at {host}, " in reason
    assert "CXRWATCH_FHIR_SERVER_BASES (https://ehr.example/fhir)" in reason
    assert "zq81" not in reason and "secret" not in reason


def test_a_patient_on_another_server_is_refused_even_when_in_the_bundle(fhir):
    # The Patient's id 1 is the other server's: keyed "1", it would join ours.
    url = "http://evil.example/Patient/1"
    resource = observation("8867-4", ucum(80, "/min"), subject={"reference": url})
    patient = {"resourceType": "Patient", "id": "1", "gender": "male"}
    message = bundle(
        "collection", {"fullUrl": url, "resource": patient}, {"resource": resource}
    )
    with pytest.raises(MissingPatient) as refused:
        read(fhir, message)
    assert (
        "at evil.example, whose base is not in CXRWATCH_FHIR_SERVER_BASES (none set)"
        in str(refused.value)
    )


@pytest.mark.parametrize(
    "reference",
    [
        "https://ehr.example/fhir/Patient/p7",
        "https://ehr.example/fhir/Patient/p7/_history/3",
        "http://old.example/Patient/p7",
    ],
)
def test_a_patient_on_a_declared_server_is_read(codes, new_york, reference):
    bases = ["https://ehr.example/fhir", "http://old.example/"]
    reader = FhirReader(codes, new_york, server_bases=bases)
    resource = observation("8867-4", ucum(80, "/min"), subject={"reference": reference})
    assert list(read(reader, resource).patients) == ["p7"]


def test_a_patient_in_the_bundle_by_urn_is_read(fhir):
    resource = observation(
        "8867-4", ucum(80, "/min"), subject={"reference": "urn:uuid:1f0e6c3a"}
    )
    patient = {"resourceType": "Patient", "id": "p7", "gender": "male"}
    message = bundle(
        "transaction",
        {"fullUrl": "urn:uuid:1f0e6c3a", "resource": patient},
        {"resource": resource},
    )
    assert list(read(fhir, message).patients) == ["p7"]


def test_identifier_system_configured_but_absent(codes, new_york):
    reader = FhirReader(codes, new_york, identifier_system="urn:oid:1.2.3")
    with pytest.raises(MissingPatient, match="CXRWATCH_CLINICAL_PATIENT_IDENTIFIER"):
        read(reader, observation("8867-4", ucum(80, "/min")))


@pytest.mark.parametrize(
    ("when", "shown"),
    [
        ("2999-01-01T00:00:00Z", "2999-01-01T00:00:00+00:00"),
        ("1800-06-01T12:00:00+01:00", "1800-06-01T12:00:00+01:00"),
        ("0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00+01:00"),  # year 0 UTC
        ("1969-12-31T23:59:59.999Z", "1969-12-31T23:59:59.999000+00:00"),
    ],
)
@pytest.mark.parametrize("in_bundle", [False, True])
def test_a_time_the_stores_cannot_hold_is_refused(fhir, when, shown, in_bundle):
    resource = observation("8867-4", ucum(80, "/min"), effectiveDateTime=when)
    reason = refusal(fhir, resource, in_bundle)
    assert f"effectiveDateTime {shown} is outside the times cxrwatch stores" in reason


def test_observation_without_any_time(fhir):
    resource = observation("8867-4", ucum(80, "/min"))
    del resource["effectiveDateTime"]
    with pytest.raises(InvalidInput, match="has no time"):
        read(fhir, resource)


def test_unknown_bundle_type(fhir):
    with pytest.raises(UnsupportedInput, match="'history'"):
        read(fhir, {"resourceType": "Bundle", "type": "history"})


def test_byte_order_mark_is_accepted(fhir):
    raw = b"\xef\xbb\xbf" + json.dumps(observation("8867-4", ucum(80, "/min"))).encode()
    assert only(fhir.read(raw)).value == 80.0


def test_same_bytes_same_message_id(fhir):
    raw = json.dumps(observation("8867-4", ucum(80, "/min"))).encode()
    assert fhir.read(raw).message_id == fhir.read(raw).message_id


@pytest.mark.parametrize(
    "reference", ["Patient/", "Patient/ ", "Patient/a\nb", "Patient/" + "9" * 200]
)
def test_a_subject_that_names_no_usable_patient_is_refused(fhir, reference):
    resource = observation("8867-4", ucum(80, "/min"))
    resource["subject"] = {"reference": reference}
    with pytest.raises(MissingPatient):
        read(fhir, resource)
