"""Fixtures of the clinical tests: the model's feature manifest, readers, samples."""

from pathlib import Path

import pytest
from cxrwatch.clinical.codes import FeatureCodes
from cxrwatch.clinical.fhir import FhirReader
from cxrwatch.clinical.hl7v2 import Hl7Reader
from cxrwatch.clinical.times import FacilityClock
from cxrwatch.core.manifest import FeatureManifest

from tests.unit.clinical.contract import build_manifest

REPO = Path(__file__).resolve().parents[3]
SHARED_DATA = REPO / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def manifest() -> FeatureManifest:
    return build_manifest()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"the shared sample data is not beside the clone: {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def codes(manifest: FeatureManifest) -> FeatureCodes:
    return FeatureCodes(manifest, {"http://acme.org/vitals|HR": "heart_rate"})


@pytest.fixture
def new_york() -> FacilityClock:
    return FacilityClock("America/New_York")


@pytest.fixture
def fhir(codes: FeatureCodes, new_york: FacilityClock) -> FhirReader:
    return FhirReader(codes, new_york)


@pytest.fixture
def hl7v2(codes: FeatureCodes, new_york: FacilityClock) -> Hl7Reader:
    return Hl7Reader(codes, new_york)
