"""The feature manifest of cxr_fusion against the model contract.

The expected names, units and LOINC codes are the contract's, written out
here rather than read from any code of the project.
"""

import json
from pathlib import Path
from typing import Any

import pytest

MANIFEST_PATH = (
    Path(__file__).resolve().parents[3] / "models" / "cxr_fusion" / "features.json"
)

CONTRACT = [
    ("age", "a", {"30525-0"}),
    ("sex", "1", {"76689-9", "46098-0"}),
    ("spo2", "%", {"59408-5", "2708-6"}),
    ("on_oxygen", "1", {"3151-8", "3150-0"}),
    ("resp_rate", "/min", {"9279-1"}),
    ("heart_rate", "/min", {"8867-4"}),
    ("temperature", "Cel", {"8310-5"}),
    ("systolic_bp", "mm[Hg]", {"8480-6"}),
    ("wbc", "10*9/L", {"6690-2", "26464-8"}),
    ("lymphocytes", "10*9/L", {"731-0", "26474-7"}),
    ("crp", "mg/L", {"1988-5"}),
    ("ldh", "U/L", {"2532-0", "14804-9"}),
]
VITALS = {"spo2", "on_oxygen", "resp_rate", "heart_rate", "temperature", "systolic_bp"}
LABS = {"wbc", "lymphocytes", "crp", "ldh"}
ONE_CENTURY_H = 100 * 365 * 24


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(MANIFEST_PATH.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def features(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = manifest["features"]
    return listed


def test_names_units_and_order_follow_the_contract(
    features: list[dict[str, Any]],
) -> None:
    assert [(f["name"], f["unit"]) for f in features] == [
        (name, unit) for name, unit, _ in CONTRACT
    ]


def test_each_feature_carries_the_contract_loinc_codes(
    features: list[dict[str, Any]],
) -> None:
    for feature, (name, _, codes) in zip(features, CONTRACT, strict=True):
        assert set(feature["loinc"]) == codes, name


def test_image_block(manifest: dict[str, Any]) -> None:
    assert manifest["model"] == "cxr_fusion"
    assert manifest["image"] == {
        "height": 224,
        "width": 224,
        "channels": 1,
        "polarity": "MONOCHROME2",
        "range": [0.0, 1.0],
    }


@pytest.mark.parametrize("index", range(len(CONTRACT)))
def test_normalisation_and_ranges_are_sane(
    features: list[dict[str, Any]], index: int
) -> None:
    feature = features[index]
    low, high = feature["valid_range"]
    assert feature["std"] > 0
    assert low < high
    assert low <= feature["mean"] <= high
    assert low <= feature["normal"] <= high


def test_lookback_hours_by_source(features: list[dict[str, Any]]) -> None:
    lookback = {f["name"]: f["lookback_hours"] for f in features}
    assert all(lookback[name] == 24 for name in VITALS)
    assert all(lookback[name] == 72 for name in LABS)
    assert lookback["age"] >= ONE_CENTURY_H
    assert lookback["sex"] >= ONE_CENTURY_H


def test_physiological_limits_spot_checks(features: list[dict[str, Any]]) -> None:
    ranges = {f["name"]: tuple(f["valid_range"]) for f in features}
    assert ranges["spo2"] == (0.0, 100.0)
    assert ranges["temperature"] == (25.0, 45.0)
    assert ranges["sex"] == (0.0, 1.0)
    assert ranges["on_oxygen"] == (0.0, 1.0)
