"""What the shipped cxr_fusion weights do, run in process with onnxruntime.

Directions and calibration come from the synthetic rule in the model card
(models/cxr_fusion/MODEL_CARD.md); the expected numbers below are worked
from its table by hand, not from the code that fitted the weights.
"""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

MODEL_DIR = Path(__file__).resolve().parents[3] / "models" / "cxr_fusion"
FEATURES = json.loads((MODEL_DIR / "features.json").read_text("utf-8"))["features"]
AVERAGE_OPACITY = 0.08  # the rule's OPACITY_MEAN: the image adds nothing

NORMAL = {
    "age": 55.0, "sex": 1.0, "spo2": 97.0, "on_oxygen": 0.0, "resp_rate": 16.0,
    "heart_rate": 75.0, "temperature": 37.0, "systolic_bp": 120.0, "wbc": 7.0,
    "lymphocytes": 2.0, "crp": 5.0, "ldh": 180.0,
}  # fmt: skip
SICK = {
    "age": 70.0, "sex": 1.0, "spo2": 86.0, "on_oxygen": 1.0, "resp_rate": 30.0,
    "heart_rate": 120.0, "temperature": 38.8, "lymphocytes": 0.6, "crp": 150.0,
    "ldh": 450.0,
}  # fmt: skip


def vectors(patient: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Normalises a patient as the services do; absent features are missing."""
    clinical = np.zeros(len(FEATURES), dtype=np.float32)
    mask = np.zeros(len(FEATURES), dtype=np.float32)
    for i, feature in enumerate(FEATURES):
        if feature["name"] in patient:
            value = patient[feature["name"]]
            clinical[i] = (value - feature["mean"]) / feature["std"]
            mask[i] = 1.0
    return clinical, mask


def score(
    session: ort.InferenceSession,
    images: np.ndarray,
    clinical: np.ndarray,
    mask: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    p, risk = session.run(
        ["p_critical", "progression_risk"],
        {"image": images, "clinical": clinical, "clinical_mask": mask},
    )
    return p[:, 0], risk[:, 0]


def score_patients(
    session: ort.InferenceSession,
    image: np.ndarray,
    patients: list[dict[str, float]],
) -> tuple[np.ndarray, np.ndarray]:
    pairs = [vectors(p) for p in patients]
    clinical = np.stack([c for c, _ in pairs])
    mask = np.stack([m for _, m in pairs])
    images = np.repeat(image[None], len(patients), axis=0)
    return score(session, images, clinical, mask)


def sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def test_calibration_patients(
    session: ort.InferenceSession, chest: Callable[[float], np.ndarray]
) -> None:
    # Rule by hand (MODEL_CARD.md, worked term by term in
    # tests/integration/test_triton_model.py): normal -1.4 - 2.49 = -3.89
    # -> 0.020; sick -1.4 + 8.49 = 7.09 -> 0.9992.
    p, _ = score_patients(session, chest(AVERAGE_OPACITY), [NORMAL, SICK])
    assert p[0] < 0.2
    assert p[1] > 0.8
    assert p[0] == pytest.approx(sigmoid(-3.89), abs=0.03)
    assert p[1] == pytest.approx(sigmoid(7.09), abs=0.01)


@pytest.mark.parametrize(
    ("feature", "worse"),
    [
        ("spo2", 88.0),
        ("resp_rate", 28.0),
        ("crp", 120.0),
        ("ldh", 400.0),
        ("lymphocytes", 0.7),
        ("on_oxygen", 1.0),
        ("age", 80.0),
    ],
)
def test_worse_values_raise_both_outputs(
    session: ort.InferenceSession,
    chest: Callable[[float], np.ndarray],
    feature: str,
    worse: float,
) -> None:
    p, risk = score_patients(
        session, chest(AVERAGE_OPACITY), [NORMAL, {**NORMAL, feature: worse}]
    )
    assert p[1] > p[0]
    assert risk[1] > risk[0]


def test_a_masked_value_is_ignored_whatever_it_holds(
    session: ort.InferenceSession, chest: Callable[[float], np.ndarray]
) -> None:
    clinical, mask = vectors(SICK)
    spo2 = [f["name"] for f in FEATURES].index("spo2")
    hidden = mask.copy()
    hidden[spo2] = 0.0
    zeroed = clinical.copy()
    zeroed[spo2] = 0.0
    images = np.repeat(chest(AVERAGE_OPACITY)[None], 2, axis=0)
    p, risk = score(
        session, images, np.stack([clinical, zeroed]), np.stack([hidden, hidden])
    )
    assert p[0] == pytest.approx(p[1], abs=1e-6)
    assert risk[0] == pytest.approx(risk[1], abs=1e-6)


def test_missing_values_pull_toward_the_cohort_average(
    session: ort.InferenceSession, chest: Callable[[float], np.ndarray]
) -> None:
    # All missing: only the intercept is left, -1.4 -> 0.198; log-hazard 0.
    clinical, _ = vectors(SICK)
    images = chest(AVERAGE_OPACITY)[None]
    p, risk = score(session, images, clinical[None], np.zeros_like(clinical)[None])
    assert p[0] == pytest.approx(sigmoid(-1.4), abs=0.05)
    assert risk[0] == pytest.approx(0.0, abs=0.2)


def test_brighter_lung_fields_raise_the_risk(
    session: ort.InferenceSession, chest: Callable[[float], np.ndarray]
) -> None:
    images = np.stack([chest(0.0), chest(0.2)])
    clinical, mask = vectors(NORMAL)
    p, risk = score(
        session, images, np.stack([clinical, clinical]), np.stack([mask, mask])
    )
    assert p[1] > p[0]
    assert risk[1] > risk[0]


def test_rows_of_a_batch_do_not_affect_each_other(
    session: ort.InferenceSession, chest: Callable[[float], np.ndarray]
) -> None:
    image = chest(AVERAGE_OPACITY)
    alone, _ = score_patients(session, image, [SICK])
    batched, _ = score_patients(session, image, [NORMAL, SICK, {}])
    assert batched[1] == pytest.approx(alone[0], abs=1e-5)
