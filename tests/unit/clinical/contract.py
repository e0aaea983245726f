"""The model's 12 clinical features, as the clinical tests expect them.

Built here rather than read from ``models/``, so that the tests check the
service against the contract, not against whatever the manifest says today.
"""

from cxrwatch.core.manifest import FeatureManifest

# name, unit, LOINC codes, look-back hours, valid range, source
FEATURES = [
    ("age", "a", ["30525-0"], 876000, (0.0, 120.0), "demographics"),
    ("sex", "1", ["76689-9", "46098-0"], 876000, (0.0, 1.0), "demographics"),
    ("spo2", "%", ["59408-5", "2708-6"], 24, (0.0, 100.0), "vitals"),
    ("on_oxygen", "1", ["3151-8", "3150-0"], 24, (0.0, 1.0), "vitals"),
    ("resp_rate", "/min", ["9279-1"], 24, (0.0, 80.0), "vitals"),
    ("heart_rate", "/min", ["8867-4"], 24, (0.0, 300.0), "vitals"),
    ("temperature", "Cel", ["8310-5"], 24, (25.0, 45.0), "vitals"),
    ("systolic_bp", "mm[Hg]", ["8480-6"], 24, (0.0, 300.0), "vitals"),
    ("wbc", "10*9/L", ["6690-2", "26464-8"], 72, (0.0, 500.0), "labs"),
    ("lymphocytes", "10*9/L", ["731-0", "26474-7"], 72, (0.0, 400.0), "labs"),
    ("crp", "mg/L", ["1988-5"], 72, (0.0, 1000.0), "labs"),
    ("ldh", "U/L", ["2532-0", "14804-9"], 72, (0.0, 20000.0), "labs"),
]


def build_manifest() -> FeatureManifest:
    """The manifest the clinical tests read, independent of the model repository."""
    return FeatureManifest.model_validate(
        {
            "model": "cxr_fusion",
            "image": {"height": 224, "width": 224},
            "features": [
                {
                    "name": name,
                    "unit": unit,
                    "loinc": loinc,
                    "mean": (low + high) / 2,
                    "std": 1.0,
                    "lookback_hours": lookback,
                    "normal": (low + high) / 2,
                    "valid_range": [low, high],
                    "source": source,
                }
                for name, unit, loinc, lookback, (low, high), source in FEATURES
            ],
        }
    )
