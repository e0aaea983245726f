"""Units: conversions into each feature's canonical unit, refusals, ranges."""

import pytest
from cxrwatch.clinical import units
from cxrwatch.clinical.answers import CodedAnswer, Quantity
from cxrwatch.clinical.measurements import feature_value
from cxrwatch.core.errors import InvalidInput
from cxrwatch.core.manifest import FeatureManifest


def value(manifest: FeatureManifest, feature: str, number: float, unit: str | None):
    return feature_value(manifest.by_name[feature], Quantity(number, unit), "test")


def test_fahrenheit_body_temperature_becomes_celsius(manifest):
    # (101.3 - 32) * 5 / 9 = 38.5
    assert value(manifest, "temperature", 101.3, "[degF]") == pytest.approx(
        38.5, abs=0.05
    )
    assert value(manifest, "temperature", 101.3, "degF") == pytest.approx(
        38.5, abs=0.05
    )


def test_crp_in_mg_per_dl_becomes_mg_per_l(manifest):
    assert value(manifest, "crp", 2.4, "mg/dL") == pytest.approx(24.0)


@pytest.mark.parametrize(
    ("number", "unit", "expected"),
    [
        (6.2, "10*3/uL", 6.2),
        (6.2, "10*9/L", 6.2),
        (6.2, "x10*9/L", 6.2),
        (105600, "{cells}/uL", 105.6),
        (4300, "/uL", 4.3),
        (6.2, "10^9/L", 6.2),
    ],
)
def test_white_cell_counts_become_10_9_per_l(manifest, number, unit, expected):
    assert value(manifest, "wbc", number, unit) == expected


def test_spo2_fraction_with_unit_1_is_a_percentage(manifest):
    assert value(manifest, "spo2", 0.91, "1") == pytest.approx(91.0)


def test_spo2_fraction_sent_as_percent_is_ambiguous(manifest):
    with pytest.raises(InvalidInput, match=r"0\.91 %.*fraction"):
        value(manifest, "spo2", 0.91, "%")


def test_kilopascal_becomes_mm_hg(manifest):
    # 16 kPa * 760 / 101.325 = 120.0 mm[Hg]
    assert value(manifest, "systolic_bp", 16.0, "kPa") == pytest.approx(120.0, abs=0.01)
    assert value(manifest, "systolic_bp", 120, "mmHg") == 120


def test_ldh_in_microkatal_becomes_units(manifest):
    assert value(manifest, "ldh", 5.0, "ukat/L") == pytest.approx(300.0)


@pytest.mark.parametrize("unit", [None, "", "  "])
def test_a_value_without_a_unit_is_refused(manifest, unit):
    with pytest.raises(InvalidInput, match="has no unit; expected /min"):
        value(manifest, "heart_rate", 80, unit)


def test_an_unknown_unit_is_refused_with_its_name(manifest):
    with pytest.raises(InvalidInput, match=r"'furlongs'.*mg/L"):
        value(manifest, "crp", 5, "furlongs")


def test_a_known_unit_of_another_dimension_is_refused(manifest):
    with pytest.raises(InvalidInput, match=r"'mg/dL'.*Cel"):
        value(manifest, "temperature", 37, "mg/dL")


@pytest.mark.parametrize(
    ("feature", "number", "unit"),
    [("spo2", 130, "%"), ("temperature", 60, "Cel"), ("heart_rate", -5, "/min")],
)
def test_physiologically_impossible_values_are_refused(manifest, feature, number, unit):
    with pytest.raises(InvalidInput, match="outside the physiological range"):
        value(manifest, feature, number, unit)


def test_non_finite_values_are_refused(manifest):
    with pytest.raises(InvalidInput, match="not a finite number"):
        value(manifest, "crp", float("nan"), "mg/L")


def test_ucum_codes_are_recognised_before_aliases():
    assert units.recognise("mm[Hg]") == "mm[Hg]"
    assert units.recognise("MG/DL") == "mg/dL"
    assert units.recognise("°F") == "[degF]"
    assert units.recognise("parsecs") is None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (True, 1.0),
        (False, 0.0),
        (CodedAnswer((("http://snomed.info/sct", "722742002"),), "Room air"), 0.0),
        (CodedAnswer((("http://snomed.info/sct", "371907003"),)), 1.0),
        (CodedAnswer((("HL70136", "Y"),)), 1.0),
        (Quantity(2.0, "L/min"), 1.0),
        (Quantity(0.0, "L/min"), 0.0),
        (Quantity(40.0, "%"), 1.0),
        (Quantity(21.0, "%"), 0.0),
        (Quantity(0.35, "1"), 1.0),
    ],
)
def test_supplemental_oxygen_from_every_kind_of_answer(manifest, answer, expected):
    assert feature_value(manifest.by_name["on_oxygen"], answer, "test") == expected


def test_an_unknown_oxygen_answer_is_refused_with_its_code(manifest):
    answer = CodedAnswer((("http://snomed.info/sct", "12345"),))
    with pytest.raises(InvalidInput, match="12345"):
        feature_value(manifest.by_name["on_oxygen"], answer, "test")


def test_a_coded_answer_gives_no_number(manifest):
    with pytest.raises(InvalidInput, match="coded answer, not a quantity"):
        feature_value(manifest.by_name["crp"], CodedAnswer((("x", "y"),)), "test")


@pytest.mark.parametrize(
    ("code", "expected"), [("LA2-8", 1.0), ("female", 0.0), ("other", None)]
)
def test_sex_observations(manifest, code, expected):
    answer = CodedAnswer((("http://loinc.org", code),))
    assert feature_value(manifest.by_name["sex"], answer, "test") == expected
