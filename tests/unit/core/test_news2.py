"""NEWS2 against the Royal College of Physicians' 2017 chart."""

import pytest
from cxrwatch.core.news2 import news2

ALL_NORMAL = {
    "resp_rate": 16.0,
    "spo2": 97.0,
    "on_oxygen": 0.0,
    "systolic_bp": 120.0,
    "heart_rate": 70.0,
    "temperature": 37.0,
}


def points(parameter: str, value: float, **kwargs) -> int:
    return news2(ALL_NORMAL | {parameter: value}, **kwargs).components[parameter]


def test_the_worked_example_scores_8_high():
    # RR 24 (2), SpO2 93 % (2), air (0), systolic 105 (1), pulse 112 (2),
    # alert (0), 38.4 Cel (1): 8.
    result = news2(
        {
            "resp_rate": 24,
            "spo2": 93,
            "on_oxygen": 0,
            "systolic_bp": 105,
            "heart_rate": 112,
            "temperature": 38.4,
        },
        consciousness="A",
    )
    assert result.components == {
        "consciousness": 0,
        "resp_rate": 2,
        "spo2": 2,
        "on_oxygen": 0,
        "systolic_bp": 1,
        "heart_rate": 2,
        "temperature": 1,
    }
    assert (result.score, result.clinical_risk, result.missing) == (8, "high", [])


def test_all_normal_scores_0_low():
    result = news2(ALL_NORMAL)
    assert (result.score, result.clinical_risk) == (0, "low")


@pytest.mark.parametrize(
    ("value", "expected"),
    [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3)],
)
def test_respiration_rate_bands(value, expected):
    assert points("resp_rate", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [(91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0)]
)
def test_spo2_scale_1_bands(value, expected):
    assert points("spo2", value) == expected


@pytest.mark.parametrize(
    ("value", "oxygen", "expected"),
    [
        (83, 0, 3),
        (84, 0, 2),
        (85, 0, 2),
        (86, 0, 1),
        (87, 0, 1),
        (88, 0, 0),
        (92, 0, 0),
        (93, 0, 0),
        (99, 0, 0),
        (92, 1, 0),
        (93, 1, 1),
        (94, 1, 1),
        (95, 1, 2),
        (96, 1, 2),
        (97, 1, 3),
    ],
)
def test_spo2_scale_2_bands(value, oxygen, expected):
    result = news2(ALL_NORMAL | {"spo2": value, "on_oxygen": oxygen}, scale=2)
    assert result.components["spo2"] == expected


def test_supplemental_oxygen_scores_2():
    assert points("on_oxygen", 1.0) == 2
    assert points("on_oxygen", 0.0) == 0


@pytest.mark.parametrize(
    ("value", "expected"),
    [(90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)],
)
def test_systolic_bands(value, expected):
    assert points("systolic_bp", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (40, 3),
        (41, 1),
        (50, 1),
        (51, 0),
        (90, 0),
        (91, 1),
        (110, 1),
        (111, 2),
        (130, 2),
        (131, 3),
    ],
)
def test_pulse_bands(value, expected):
    assert points("heart_rate", value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (35.0, 3),
        (35.1, 1),
        (36.0, 1),
        (36.1, 0),
        (38.0, 0),
        (38.1, 1),
        (39.0, 1),
        (39.1, 2),
    ],
)
def test_temperature_bands(value, expected):
    assert points("temperature", value) == expected


@pytest.mark.parametrize("level", ["C", "V", "P", "U", "v"])
def test_anything_but_alert_scores_3(level):
    assert news2(ALL_NORMAL, consciousness=level).components["consciousness"] == 3


def test_a_single_red_parameter_is_low_medium():
    result = news2(ALL_NORMAL | {"resp_rate": 7})
    assert (result.score, result.clinical_risk) == (3, "low-medium")


@pytest.mark.parametrize(
    ("changes", "score", "risk"),
    [
        ({"resp_rate": 22, "heart_rate": 115}, 4, "low"),
        ({"resp_rate": 22, "heart_rate": 115, "temperature": 38.5}, 5, "medium"),
        ({"resp_rate": 22, "heart_rate": 115, "spo2": 93}, 6, "medium"),
        (
            {"resp_rate": 22, "heart_rate": 115, "spo2": 93, "temperature": 38.5},
            7,
            "high",
        ),
    ],
)
def test_risk_thresholds(changes, score, risk):
    result = news2(ALL_NORMAL | changes)
    assert (result.score, result.clinical_risk) == (score, risk)


def test_highest_possible_score_is_20():
    worst = {
        "resp_rate": 30,
        "spo2": 85,
        "on_oxygen": 1,
        "systolic_bp": 80,
        "heart_rate": 140,
        "temperature": 34,
    }
    assert news2(worst, consciousness="U").score == 20


def test_a_missing_vital_leaves_the_score_unset():
    result = news2(ALL_NORMAL | {"temperature": None, "on_oxygen": None})
    assert result.score is None
    assert result.clinical_risk is None
    assert result.missing == ["on_oxygen", "temperature"]
    assert result.components["resp_rate"] == 0
    assert "temperature" not in result.components


def test_a_vital_absent_from_the_mapping_is_missing():
    values = dict(ALL_NORMAL)
    del values["heart_rate"]
    assert news2(values).missing == ["heart_rate"]


def test_between_printed_bands_a_value_takes_the_higher_band():
    assert points("resp_rate", 20.5) == 2
    assert points("temperature", 38.05) == 1


def test_invalid_arguments():
    with pytest.raises(ValueError, match="consciousness"):
        news2(ALL_NORMAL, consciousness="X")
    with pytest.raises(ValueError, match="scale"):
        news2(ALL_NORMAL, scale=3)
