"""HL7 v2: the stored samples, the known failing input, malformed messages."""

import re
from datetime import UTC, date, datetime

import pytest
from cxrwatch.clinical.codes import FeatureCodes
from cxrwatch.clinical.hl7v2 import Hl7Reader
from cxrwatch.core.errors import InvalidInput, MissingPatient, UnsupportedInput

MSH = "MSH|^~\\&|MONITOR|WARD7|CXRWATCH|HOSP|20210309143500||ORU^R01|MSG0001|P|2.5.1"
PID = "PID|1||MRN123^^^HOSP^MR~999^^^OTHER^PI||DOE^JANE||19500201|F"
OBR = "OBR|1|PL1|FI1|85353-1^Vitals^LN|||20210309143000"
VITALS = [
    "OBX|1|NM|9279-1^Resp rate^LN||24|/min||H|||F|||20210309143000",
    "OBX|2|NM|59408-5^SpO2^LN||93|%||L|||F|||20210309143000",
    "OBX|3|NM|8480-6^Systolic^LN||105|mm[Hg]||L|||F|||20210309143000",
    "OBX|4|NM|8867-4^Pulse^LN||112|/min||H|||F|||20210309143000",
    "OBX|5|NM|8310-5^Temp^LN||101.3|[degF]||H|||F|||20210309143000",
    "OBX|6|ST|1988-5^CRP^LN||2.4|mg/dL|||||F|||20210309143000",
]


def message(*segments: str, separator: str = "\r") -> bytes:
    return separator.join(segments).encode()


def values(reading) -> dict[str, float | None]:
    [patient] = reading.patients.values()
    return {o.feature: o.value for o in patient.observations}


def one(reading):
    [patient] = reading.patients.values()
    [stored] = patient.observations
    return stored


def sample(shared_data, name: str) -> bytes:
    return (shared_data / "hl7v2" / name).read_bytes()


# Known failing input: line feeds between segments -----------------------------


@pytest.mark.parametrize("separator", ["\n", "\r\n", "\r"])
def test_every_obx_is_read_whatever_ends_the_segments(hl7v2, separator):
    reading = hl7v2.read(message(MSH, PID, OBR, *VITALS, separator=separator))
    assert values(reading) == {
        "resp_rate": 24.0,
        "spo2": 93.0,
        "systolic_bp": 105.0,
        "heart_rate": 112.0,
        "temperature": pytest.approx(38.5, abs=0.05),
        "crp": pytest.approx(24.0),
    }
    # No offset: New York winter time, EST (-5).
    times = {o.effective_at for o in reading.patients["MRN123"].observations}
    assert times == {datetime(2021, 3, 9, 19, 30, tzinfo=UTC)}


# The stored samples: LF separators, byte-order marks -------------------------


def test_nist_cbc_gives_white_cells_and_lymphocytes(hl7v2, shared_data):
    reading = hl7v2.read(sample(shared_data, "LRI_2.0-NG_CBC_Typ_Message.hl7"))
    assert list(reading.patients) == ["PATID1234"]
    # WBC 105600 {cells}/uL = 105.6 10*9/L; lymphocytes 41.2 10*3/uL = 41.2 10*9/L.
    assert values(reading) == {"wbc": 105.6, "lymphocytes": 41.2}
    patient = reading.patients["PATID1234"]
    assert (patient.birth_date, patient.sex) == (date(1961, 6, 15), "M")
    # OBX-14 20110103143428-0800.
    assert patient.observations[0].effective_at == datetime(
        2011, 1, 3, 22, 34, 28, tzinfo=UTC
    )
    assert (
        reading.message_id
        == "hl7:NIST Test Lab APP|NIST Lab Facility|NIST-LRI-NG-002.00"
    )


@pytest.mark.parametrize("name", ["LAB-ORU-1.hl7", "LAB-ORU-2.hl7"])
def test_cbc_with_unmapped_codes_keeps_only_demographics(hl7v2, shared_data, name):
    reading = hl7v2.read(sample(shared_data, name))
    patient = reading.patients["10006579"]
    assert patient.observations == []
    assert (patient.birth_date, patient.sex) == (date(1924, 10, 10), "M")
    assert reading.ignored["unmapped-code"] == 10


def test_glucose_example_is_read_and_left_aside(hl7v2, shared_data):
    reading = hl7v2.read(sample(shared_data, "ORU-R01-RMGEAD.hl7"))
    assert reading.patients["555-44-4444"].sex == "F"
    assert reading.observation_count == 0


# Value types, flags, statuses, times -------------------------------------------


def obx(
    value_type: str, value: str, unit: str, status: str = "F", when: str = ""
) -> str:
    return f"OBX|1|{value_type}|1988-5^CRP^LN||{value}|{unit}|||||{status}|||{when}"


@pytest.mark.parametrize(
    ("value_type", "value", "expected", "comparator"),
    [
        ("NM", "12.5", 12.5, None),
        ("SN", "^12.5", 12.5, None),
        ("SN", "<^5", 5.0, "<"),
        ("ST", "<5", 5.0, "<"),
        ("ST", " 7 ", 7.0, None),
    ],
)
def test_numeric_value_types(hl7v2, value_type, value, expected, comparator):
    stored = one(hl7v2.read(message(MSH, PID, OBR, obx(value_type, value, "mg/L"))))
    assert stored.value == expected


def test_escape_sequences_in_a_unit_are_unescaped_before_it_is_read(hl7v2):
    segment = "OBX|1|NM|1988-5^CRP^LN||3|mg\\F\\L|||||F"
    with pytest.raises(InvalidInput, match=re.escape("unit 'mg|L'")):
        hl7v2.read(message(MSH, PID, OBR, segment))


def test_local_code_with_escapes(new_york, manifest):
    reader = Hl7Reader(FeatureCodes(manifest, {"99LAB|CRP^1": "crp"}), new_york)
    segment = "OBX|1|NM|CRP\\S\\1^C-reactive protein^99LAB||3|mg/L|||||F"
    assert one(reader.read(message(MSH, PID, OBR, segment))).feature == "crp"


@pytest.mark.parametrize(
    ("flag", "status"),
    [("F", "final"), ("C", "corrected"), ("P", "preliminary")],
)
def test_result_statuses_that_store(hl7v2, flag, status):
    stored = one(hl7v2.read(message(MSH, PID, OBR, obx("NM", "3", "mg/L", flag))))
    assert stored.status == status


def test_corrected_outranks_final_from_the_same_message_time(hl7v2):
    final = one(hl7v2.read(message(MSH, PID, OBR, obx("NM", "3", "mg/L", "F"))))
    corrected = one(hl7v2.read(message(MSH, PID, OBR, obx("NM", "4", "mg/L", "C"))))
    assert corrected.source_id == final.source_id
    assert corrected.version > final.version


def test_a_correction_in_a_later_message_replaces_the_same_source(hl7v2):
    later = MSH.replace("20210309143500", "20210309160000").replace(
        "MSG0001", "MSG0002"
    )
    first = one(hl7v2.read(message(MSH, PID, OBR, obx("NM", "3", "mg/L", "F"))))
    second = one(hl7v2.read(message(later, PID, OBR, obx("NM", "4", "mg/L", "C"))))
    assert first.source_id == second.source_id
    assert second.version > first.version


def test_result_not_obtained_is_ignored(hl7v2):
    reading = hl7v2.read(message(MSH, PID, OBR, obx("NM", "", "mg/L", "X")))
    assert reading.observation_count == 0
    assert reading.ignored["result-not-obtained"] == 1


@pytest.mark.parametrize("flag", ["D", "W"])
def test_deleted_or_wrong_results_are_withdrawn(hl7v2, flag):
    stored = one(hl7v2.read(message(MSH, PID, OBR, obx("NM", "3", "furlongs", flag))))
    assert (stored.status, stored.value) == ("entered-in-error", None)


def test_time_falls_back_to_obr_7_then_msh_7(hl7v2):
    with_obr = one(hl7v2.read(message(MSH, PID, OBR, obx("NM", "3", "mg/L"))))
    assert with_obr.effective_at == datetime(2021, 3, 9, 19, 30, tzinfo=UTC)
    bare_obr = "OBR|1|PL1|FI1|85353-1^Vitals^LN"
    with_msh = one(hl7v2.read(message(MSH, PID, bare_obr, obx("NM", "3", "mg/L"))))
    assert with_msh.effective_at == datetime(2021, 3, 9, 19, 35, tzinfo=UTC)


def test_abnormal_flag_beyond_the_scale_marks_a_censored_value(hl7v2):
    segment = "OBX|1|NM|1988-5^CRP^LN||300|mg/L||>|||F"
    assert one(hl7v2.read(message(MSH, PID, OBR, segment))).value == 300.0


def test_mllp_frame_and_byte_order_mark(hl7v2):
    framed = b"\x0b\xef\xbb\xbf" + message(MSH, PID, OBR, *VITALS) + b"\x1c\r"
    assert len(values(hl7v2.read(framed))) == 6


def test_adt_gives_demographics_only(hl7v2):
    adt = MSH.replace("ORU^R01", "ADT^A01")
    reading = hl7v2.read(message(adt, "EVN|A01|20210309", PID))
    patient = reading.patients["MRN123"]
    assert (patient.birth_date, patient.sex, patient.observations) == (
        date(1950, 2, 1),
        "F",
        [],
    )


@pytest.mark.parametrize("kind", ["ORU^R01", "ADT^A01"])
def test_a_birth_date_after_the_message_is_refused_without_showing_it(hl7v2, kind):
    # MSH-7 is 2021-03-09 14:35 in New York; the next day cannot be a birth date.
    pid = PID.replace("19500201", "20210310")
    with pytest.raises(InvalidInput) as refused:
        hl7v2.read(message(MSH.replace("ORU^R01", kind), pid, OBR, *VITALS[:1]))
    assert type(refused.value) is InvalidInput
    reason = str(refused.value)
    assert "PID-7 birth date is after 2021-03-09, the day of the message" in reason
    assert "20210310" not in reason and "2021-03-10" not in reason


def test_a_birth_date_after_today_is_refused_whatever_the_message_time(hl7v2):
    header = MSH.replace("20210309143500", "22000101000000+0000")
    pid = PID.replace("19500201", "21991231")
    with pytest.raises(InvalidInput, match="PID-7 birth date is after 20"):
        hl7v2.read(message(header.replace("ORU^R01", "ADT^A01"), pid))


def test_a_birth_date_on_the_day_of_the_message_is_read(hl7v2):
    pid = PID.replace("19500201", "20210309")
    reading = hl7v2.read(message(MSH, pid, OBR, *VITALS[:1]))
    assert reading.patients["MRN123"].birth_date == date(2021, 3, 9)


def test_patient_key_by_assigning_authority_and_type(codes, new_york):
    reader = Hl7Reader(
        codes, new_york, assigning_authority="OTHER", identifier_type="PI"
    )
    reading = reader.read(message(MSH, PID, OBR, *VITALS[:1]))
    assert list(reading.patients) == ["999"]


def test_duplicate_identity_in_one_message_stays_apart(hl7v2):
    reading = hl7v2.read(
        message(MSH, PID, OBR, VITALS[0], VITALS[0].replace("|24|", "|26|"))
    )
    ids = [o.source_id for o in reading.patients["MRN123"].observations]
    assert len(set(ids)) == 2


# Malformed messages ------------------------------------------------------------


def test_message_without_msh(hl7v2):
    with pytest.raises(InvalidInput, match="starts with MSH, this one with 'PID'"):
        hl7v2.read(message(PID, OBR, *VITALS))


def test_oru_without_pid(hl7v2):
    with pytest.raises(MissingPatient, match="PID"):
        hl7v2.read(message(MSH, OBR, *VITALS))


def test_pid_without_identifier(hl7v2):
    with pytest.raises(MissingPatient, match="PID-3 holds no patient identifier"):
        hl7v2.read(message(MSH, "PID|1||||DOE^JANE", OBR, *VITALS))


def test_unmatched_assigning_authority_names_the_setting(codes, new_york):
    reader = Hl7Reader(codes, new_york, assigning_authority="ELSEWHERE")
    with pytest.raises(MissingPatient, match="CXRWATCH_CLINICAL_HL7_ASSIGNING"):
        reader.read(message(MSH, PID, OBR, *VITALS))


def test_non_numeric_nm(hl7v2):
    with pytest.raises(InvalidInput, match="NM value 'high' is not a number"):
        hl7v2.read(message(MSH, PID, OBR, obx("NM", "high", "mg/L")))


def test_unknown_unit(hl7v2):
    with pytest.raises(InvalidInput, match="'giga-units'"):
        hl7v2.read(message(MSH, PID, OBR, obx("NM", "3", "giga-units")))


def test_missing_unit(hl7v2):
    with pytest.raises(InvalidInput, match="has no unit; expected mg/L"):
        hl7v2.read(message(MSH, PID, OBR, obx("NM", "3", "")))


def test_one_bad_obx_refuses_the_message_and_names_it(hl7v2):
    bad = VITALS[3].replace("|112|", "|fast|")
    with pytest.raises(InvalidInput) as refused:
        hl7v2.read(message(MSH, PID, OBR, *VITALS[:3], bad))
    assert "nothing stored; 1 problem: OBX 4 (LOINC 8867-4 → heart_rate)" in str(
        refused.value
    )


def test_empty_result_status(hl7v2):
    with pytest.raises(InvalidInput, match="OBX-11 result status ''"):
        hl7v2.read(message(MSH, PID, OBR, obx("NM", "3", "mg/L", "")))


def test_sn_range_is_not_one_number(hl7v2):
    with pytest.raises(InvalidInput, match="range or ratio"):
        hl7v2.read(message(MSH, PID, OBR, obx("SN", "^1^-^3", "mg/L")))


def test_text_value_type_gives_no_number(hl7v2):
    with pytest.raises(InvalidInput, match="value type 'TX'"):
        hl7v2.read(message(MSH, PID, OBR, obx("TX", "raised", "mg/L")))


def test_batch_is_refused(hl7v2):
    with pytest.raises(UnsupportedInput, match="2 messages"):
        hl7v2.read(message(MSH, PID, OBR, *VITALS, MSH, PID))


def test_unsupported_message_type(hl7v2):
    with pytest.raises(UnsupportedInput, match="ORM"):
        hl7v2.read(message(MSH.replace("ORU^R01", "ORM^O01"), PID))


def test_missing_control_id(hl7v2):
    with pytest.raises(InvalidInput, match="MSH-10"):
        hl7v2.read(message(MSH.replace("MSG0001", ""), PID, OBR, *VITALS))


def test_malformed_observation_time(hl7v2):
    with pytest.raises(InvalidInput, match="OBX-14 'soon'"):
        hl7v2.read(message(MSH, PID, OBR, obx("NM", "3", "mg/L", when="soon")))


def test_an_observation_time_the_stores_cannot_hold_is_refused(hl7v2):
    late = obx("NM", "3", "mg/L", when="29991204120000")
    with pytest.raises(InvalidInput) as refused:
        hl7v2.read(message(MSH, PID, OBR, late))
    assert type(refused.value) is InvalidInput
    # 12:00 in New York in December is EST, -05:00.
    assert "OBX-14 2999-12-04T12:00:00-05:00 is outside the times cxrwatch " in str(
        refused.value
    )


def test_an_order_time_the_stores_cannot_hold_is_refused(hl7v2):
    early = OBR.replace("20210309143000", "18000101000000+0000")
    with pytest.raises(InvalidInput, match=r"^OBR-7 1800-01-01T00:00:00\+00:00 is "):
        hl7v2.read(message(MSH, PID, early, obx("NM", "3", "mg/L")))


@pytest.mark.parametrize("kind", ["ORU^R01", "ADT^A01"])
def test_a_message_time_the_stores_cannot_hold_is_refused(hl7v2, kind):
    header = MSH.replace("20210309143500", "29990101000000+0000")
    with pytest.raises(InvalidInput) as refused:
        hl7v2.read(message(header.replace("ORU^R01", kind), PID))
    assert type(refused.value) is InvalidInput
    assert str(refused.value) == (
        "MSH-7 2999-01-01T00:00:00+00:00 is outside the times cxrwatch stores "
        "(1970-01-01 to 2286-11-20)"
    )


def test_not_utf8_without_a_declared_charset(hl7v2):
    with pytest.raises(InvalidInput, match="not UTF-8"):
        hl7v2.read(message(MSH, "PID|1||MRN1||D\xe9j\xe0").replace(b"\xc3", b"\xff"))


# Unusable delimiters: python-hl7 would split them into nonsense ----------------


def test_repeated_encoding_characters_are_refused_naming_msh_2(hl7v2):
    # Read by the library, '#' for both component and repetition gave the type
    # ORU^R01^ORU_R01^ and the patient 'T'; the real problem is MSH-2.
    with pytest.raises(InvalidInput) as refused:
        hl7v2.read(message(MSH.replace("^~\\&", "##"), PID, OBR, *VITALS))
    assert type(refused.value) is InvalidInput
    assert str(refused.value) == (
        "MSH-2 encoding characters '##' are not usable: 2 characters, not 4 "
        "(or 5 with truncation); '#' repeated. MSH-2 holds the component, "
        "repetition, escape and subcomponent characters, all different, "
        "usually ^~\\&"
    )


@pytest.mark.parametrize(
    ("encoding", "problem"),
    [
        ("^~\\&&", ": '&' repeated."),
        ("^~a&", ": 'a' is a letter, digit or white space."),
        ("^~1&", ": '1' is a letter, digit or white space."),
        ("^~ &", ": ' ' is a letter, digit or white space."),
        ("^~\t&", ": '\\t' is a letter, digit or white space."),
        ("^~\\", ": 3 characters, not 4 (or 5 with truncation)."),
        ("^~\\&#$", ": 6 characters, not 4 (or 5 with truncation)."),
        ("", ": 0 characters, not 4 (or 5 with truncation)."),
    ],
)
def test_unusable_encoding_characters_are_named(hl7v2, encoding, problem):
    with pytest.raises(InvalidInput) as refused:
        hl7v2.read(message(MSH.replace("^~\\&", encoding), PID, OBR, *VITALS))
    assert type(refused.value) is InvalidInput
    assert str(refused.value).startswith("MSH-2 encoding characters '")
    assert problem in str(refused.value)


def test_a_letter_as_field_separator_is_refused_naming_msh_1(hl7v2):
    with pytest.raises(InvalidInput, match=r"^MSH-1 field separator 'X' is not"):
        hl7v2.read(message(MSH.replace("|", "X"), PID, OBR, *VITALS))


@pytest.mark.parametrize("header", ["MSH|^~\\&#|", "MSH|!~\\&|", "MSH#^~\\&#"])
def test_other_usable_delimiters_are_read(hl7v2, header):
    separator, component = header[3], header[4]

    def written(segment: str) -> str:
        return segment.replace("^", component).replace("|", separator)

    msh = header + written(MSH.removeprefix("MSH|^~\\&|"))
    reading = hl7v2.read(message(msh, *map(written, (PID, OBR, VITALS[0]))))
    assert [o.value for o in reading.patients["MRN123"].observations] == [24.0]
