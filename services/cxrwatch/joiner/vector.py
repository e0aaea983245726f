"""The clinical vector and missing-value mask the model takes, from a snapshot."""

from dataclasses import dataclass

from cxrwatch.core.manifest import FeatureManifest
from cxrwatch.core.observations import ClinicalSnapshot


@dataclass(frozen=True)
class ClinicalVector:
    """Normalised values, the mask, and the raw values they came from."""

    values: list[float]
    mask: list[float]
    raw: dict[str, float | None]


def build_vector(
    manifest: FeatureManifest, snapshot: ClinicalSnapshot
) -> ClinicalVector:
    """Normalise each observed feature; a missing one is 0 with mask 0.

    Zero is the population mean after normalisation, so a missing value pulls
    the model toward the average patient, and the mask tells it so.
    """
    values: list[float] = []
    mask: list[float] = []
    raw: dict[str, float | None] = {}
    for feature in manifest.features:
        value = snapshot.values.get(feature.name)
        raw[feature.name] = value
        if value is None:
            values.append(0.0)
            mask.append(0.0)
        else:
            values.append(round(feature.normalise(value), 6))
            mask.append(1.0)
    return ClinicalVector(values=values, mask=mask, raw=raw)
