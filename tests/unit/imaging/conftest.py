"""Fixtures shared by the imaging unit tests."""

from datetime import UTC, tzinfo

import pytest
from cxrwatch.core.manifest import ImageSpec

from tests.unit.imaging.samples import MODEL_SPEC


@pytest.fixture
def spec() -> ImageSpec:
    """The model's image input until the manifest exists: 224 x 224, 1 channel."""
    return MODEL_SPEC


@pytest.fixture
def utc() -> tzinfo:
    """A facility in UTC."""
    return UTC
