"""The model's feature manifest: input size, clinical features, their codes and units.

The services read these from the model repository (``<repo>/<model>/features.json``),
never from constants, so that swapping the model swaps the contract with it.
"""

import json
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cxrwatch.core.errors import ContractMismatch


class ImageSpec(BaseModel):
    """Size and polarity of the image input."""

    model_config = ConfigDict(frozen=True)

    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: int = Field(1, ge=1)
    polarity: str = "MONOCHROME2"
    range: tuple[float, float] = (0.0, 1.0)


class Feature(BaseModel):
    """One clinical input of the model."""

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str
    unit: str
    loinc: list[str]
    mean: float
    std: float = Field(gt=0)
    lookback_hours: float = Field(gt=0)
    normal: float
    valid_range: tuple[float, float]
    source: str = "observation"

    def normalise(self, value: float) -> float:
        """Return the value as the model expects it: centred and scaled."""
        return (value - self.mean) / self.std


class FeatureManifest(BaseModel):
    """What the model takes, as its own files declare it."""

    model_config = ConfigDict(frozen=True, extra="allow")

    model: str
    image: ImageSpec
    features: list[Feature] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> "FeatureManifest":
        names = [feature.name for feature in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"feature names repeat: {names}")
        return self

    @cached_property
    def by_name(self) -> dict[str, Feature]:
        """Features keyed by name."""
        return {feature.name: feature for feature in self.features}

    @cached_property
    def by_loinc(self) -> dict[str, Feature]:
        """Features keyed by each of their LOINC codes."""
        return {code: feature for feature in self.features for code in feature.loinc}

    @property
    def names(self) -> list[str]:
        """Feature names in the model's input order."""
        return [feature.name for feature in self.features]


def load_manifest(path: Path) -> FeatureManifest:
    """Read and validate a feature manifest.

    Raises
    ------
    ContractMismatch
        If the file is missing or does not describe a valid manifest.
    """
    try:
        return FeatureManifest.model_validate(json.loads(path.read_text("utf-8")))
    except FileNotFoundError as exc:
        raise ContractMismatch(
            f"no feature manifest at {path}; set CXRWATCH_MODEL_REPOSITORY "
            "to the Triton model repository"
        ) from exc
    except (ValueError, ValidationError) as exc:
        raise ContractMismatch(f"feature manifest {path} is invalid: {exc}") from exc
