"""Reads and checks ``cxr_fusion/features.json``, the model's feature manifest.

The manifest is written by hand and committed; it is the one place where the
clinical features, their order, units, LOINC codes and normalisation live.
The build reads it (never constants of its own) and refuses a manifest that
breaks the model contract.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from risk_rule import FeatureScale

MANIFEST_PATH = Path(__file__).resolve().parent / "cxr_fusion" / "features.json"

CONTRACT_FEATURES: tuple[tuple[str, str], ...] = (
    ("age", "a"),
    ("sex", "1"),
    ("spo2", "%"),
    ("on_oxygen", "1"),
    ("resp_rate", "/min"),
    ("heart_rate", "/min"),
    ("temperature", "Cel"),
    ("systolic_bp", "mm[Hg]"),
    ("wbc", "10*9/L"),
    ("lymphocytes", "10*9/L"),
    ("crp", "mg/L"),
    ("ldh", "U/L"),
)


class ManifestError(ValueError):
    """The feature manifest breaks the model contract."""


def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, Any]:
    """Loads the manifest and checks it against the contract.

    Raises
    ------
    ManifestError
        If a feature is missing, out of order, in another unit, or has a
        non-positive std or a valid range that does not hold its mean.
    """
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    features = manifest["features"]
    declared = [(f["name"], f["unit"]) for f in features]
    if declared != list(CONTRACT_FEATURES):
        raise ManifestError(
            f"{path}: features {declared} differ from the contract "
            f"{list(CONTRACT_FEATURES)}; fix the manifest, not the contract"
        )
    for feature in features:
        _check_feature(feature)
    return manifest


def _check_feature(feature: dict[str, Any]) -> None:
    name = feature["name"]
    if feature["std"] <= 0:
        raise ManifestError(f"feature {name}: std {feature['std']} must be > 0")
    low, high = feature["valid_range"]
    if not low <= feature["mean"] <= high:
        raise ManifestError(
            f"feature {name}: mean {feature['mean']} outside valid_range "
            f"[{low}, {high}]"
        )
    if not feature["loinc"]:
        raise ManifestError(f"feature {name}: no LOINC code")


def feature_scales(manifest: dict[str, Any]) -> list[FeatureScale]:
    """Returns each feature's mean and std in manifest order."""
    return [
        FeatureScale(name=f["name"], mean=float(f["mean"]), std=float(f["std"]))
        for f in manifest["features"]
    ]
