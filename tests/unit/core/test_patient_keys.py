"""Which strings can identify a patient."""

import pytest
from cxrwatch.core.errors import MissingPatient
from cxrwatch.core.ids import checked_patient_key


@pytest.mark.parametrize("key", ["CXR-1001", "MRN-205518@st-elsewhere", "1" * 128])
def test_ordinary_keys_pass(key: str) -> None:
    assert checked_patient_key(key, "test") == key


@pytest.mark.parametrize(
    ("key", "reason"),
    [("", "blank"), ("   ", "blank"), ("a\x00b", "control"), ("1" * 129, "129")],
)
def test_unusable_keys_are_refused_without_echoing_them(key: str, reason: str) -> None:
    with pytest.raises(MissingPatient, match=reason) as caught:
        checked_patient_key(key, "PID-3")
    assert "PID-3" in str(caught.value)
    assert key.strip() == "" or key not in str(caught.value)
