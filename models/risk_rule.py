"""The synthetic rule that the shipped cxr_fusion weights are fitted to.

The published model (Jiao et al., Lancet Digital Health 2021) has no public
weights, so the shipped network imitates a hand-written rule instead. The
rule is the ground truth of every training target in ``build.py`` and is
documented, term by term, in ``cxr_fusion/MODEL_CARD.md``. It is NOT a
clinical score.

How the rule reads its inputs:

- every clinical input is a normalised value ``z = (x - mean) / std`` with
  mean and std from ``cxr_fusion/features.json``; ``z`` is clamped to
  [-Z_LIMIT, Z_LIMIT] and turned back into a raw value
  ``x = mean + std * z``;
- a feature contributes ``w * (basis(x) - basis(mean))`` per term, so a
  feature at the cohort mean contributes nothing;
- a feature whose mask is 0 contributes nothing: missing is read as the
  cohort mean, which is exactly what a 0 in the normalised input means;
- the image contributes ``w * opacity_z``, where ``opacity_z`` is the lung
  opacity of the synthetic radiograph (see ``chest_phantom.py``), normalised
  with OPACITY_MEAN / OPACITY_STD and clamped to OPACITY_Z_RANGE.

``p_critical = sigmoid(CRITICAL_INTERCEPT + sum of critical terms)`` and
``progression_risk = sum of progression terms`` (a log-hazard relative to the
cohort-average patient, 0 meaning average hazard).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

Basis = Literal["linear", "below", "above", "log1p"]

Z_LIMIT = 5.0
CRITICAL_INTERCEPT = -1.4
OPACITY_MEAN = 0.08
OPACITY_STD = 0.08
OPACITY_Z_RANGE = (-2.0, 3.0)
IMAGE_WEIGHT_CRITICAL = 0.5
IMAGE_WEIGHT_PROGRESSION = 0.2


@dataclass(frozen=True)
class RuleTerm:
    """One additive term of the rule, in the feature's canonical unit.

    ``basis`` is one of: ``linear`` (x), ``below`` (max(0, knot - x)),
    ``above`` (max(0, x - knot)) and ``log1p`` (ln(1 + max(x, 0) / knot)).
    """

    feature: str
    basis: Basis
    knot: float
    critical: float
    progression: float

    def evaluate(self, raw: FloatArray) -> FloatArray:
        """Returns the basis function of the raw values."""
        if self.basis == "linear":
            return raw
        if self.basis == "below":
            return np.maximum(0.0, self.knot - raw)
        if self.basis == "above":
            return np.maximum(0.0, raw - self.knot)
        return np.log1p(np.maximum(raw, 0.0) / self.knot)


RULE_TERMS: tuple[RuleTerm, ...] = (
    RuleTerm("age", "linear", 0.0, 0.035, 0.015),
    RuleTerm("sex", "linear", 0.0, 0.30, 0.10),
    RuleTerm("spo2", "below", 96.0, 0.28, 0.08),
    RuleTerm("on_oxygen", "linear", 0.0, 0.90, 0.25),
    RuleTerm("resp_rate", "above", 18.0, 0.12, 0.03),
    RuleTerm("heart_rate", "above", 90.0, 0.025, 0.008),
    RuleTerm("heart_rate", "below", 50.0, 0.030, 0.010),
    RuleTerm("temperature", "above", 37.5, 0.45, 0.12),
    RuleTerm("temperature", "below", 36.0, 0.60, 0.15),
    RuleTerm("systolic_bp", "below", 100.0, 0.030, 0.010),
    RuleTerm("wbc", "above", 10.0, 0.08, 0.03),
    RuleTerm("wbc", "below", 4.0, 0.20, 0.05),
    RuleTerm("lymphocytes", "below", 1.5, 1.30, 0.50),
    RuleTerm("crp", "log1p", 10.0, 0.70, 0.30),
    RuleTerm("ldh", "above", 220.0, 0.005, 0.0025),
)


@dataclass(frozen=True)
class FeatureScale:
    """The normalisation of one feature, as the manifest declares it."""

    name: str
    mean: float
    std: float


@dataclass(frozen=True)
class RuleOutputs:
    """What the rule says for a batch: logit of p_critical and log-hazard."""

    critical_logit: FloatArray
    progression_risk: FloatArray

    @property
    def p_critical(self) -> FloatArray:
        """Returns the probability of critical illness."""
        return 1.0 / (1.0 + np.exp(-self.critical_logit))


def normalise(
    raw: dict[str, float], scales: list[FeatureScale]
) -> tuple[FloatArray, FloatArray]:
    """Turns raw values (by feature name) into the model's clinical and mask.

    A feature absent from ``raw`` is missing: 0 in both vectors.
    """
    clinical = np.zeros(len(scales))
    mask = np.zeros(len(scales))
    for index, scale in enumerate(scales):
        if scale.name in raw:
            clinical[index] = (raw[scale.name] - scale.mean) / scale.std
            mask[index] = 1.0
    return clinical, mask


def opacity_z(lung_opacity: FloatArray) -> FloatArray:
    """Returns the clamped, normalised lung opacity the rule scores."""
    low, high = OPACITY_Z_RANGE
    return np.clip((lung_opacity - OPACITY_MEAN) / OPACITY_STD, low, high)


def evaluate(
    clinical: FloatArray,
    mask: FloatArray,
    image_opacity_z: FloatArray,
    scales: list[FeatureScale],
) -> RuleOutputs:
    """Evaluates the rule on normalised inputs.

    ``clinical`` and ``mask`` have shape [B, K] in manifest order;
    ``image_opacity_z`` has shape [B] and is already clamped.
    """
    index = {scale.name: i for i, scale in enumerate(scales)}
    z = np.clip(clinical, -Z_LIMIT, Z_LIMIT) * mask
    critical = np.full(z.shape[0], CRITICAL_INTERCEPT)
    progression = np.zeros(z.shape[0])

    for term in RULE_TERMS:
        i = index[term.feature]
        scale = scales[i]
        raw = scale.mean + scale.std * z[:, i]
        mean = np.array([scale.mean])
        delta = (term.evaluate(raw) - term.evaluate(mean)) * mask[:, i]
        critical += term.critical * delta
        progression += term.progression * delta

    critical += IMAGE_WEIGHT_CRITICAL * image_opacity_z
    progression += IMAGE_WEIGHT_PROGRESSION * image_opacity_z
    return RuleOutputs(critical_logit=critical, progression_risk=progression)
