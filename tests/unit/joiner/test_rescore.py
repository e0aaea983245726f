"""Which radiographs a clinical update re-scores, and as of when."""

from datetime import UTC, datetime, timedelta

import numpy as np
from cxrwatch.core.events import Radiograph, Tensor
from cxrwatch.joiner.rescore import rescore_times

LOOKBACK = timedelta(hours=24)
VALIDITY = timedelta(hours=48)
D0 = datetime(2026, 3, 1, tzinfo=UTC)


def radiograph(name: str, hours: float) -> Radiograph:
    return Radiograph(
        radiograph_id=name,
        patient_key="CXR-1",
        study_instance_uid="1.2",
        series_instance_uid="1.2.3",
        sop_instance_uid=f"1.2.3.{name}",
        acquired_at=D0 + timedelta(hours=hours),
        modality="CR",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        photometric_interpretation="MONOCHROME1",
        image=Tensor.from_array(np.zeros((1, 2, 2), dtype=np.float32)),
    )


def at(hours: float) -> datetime:
    return D0 + timedelta(hours=hours)


def test_a_late_value_before_the_image_rescores_it_as_of_acquisition() -> None:
    image = radiograph("r1", 10)
    assert rescore_times([image], [at(4)], LOOKBACK, VALIDITY) == [(image, at(10))]


def test_a_value_older_than_the_lookback_changes_nothing() -> None:
    # 10 h - 24 h = -14 h: a value at -20 h is outside the window.
    assert rescore_times([radiograph("r1", 10)], [at(-20)], LOOKBACK, VALIDITY) == []


def test_a_newer_value_rescores_the_latest_prior_image_as_of_the_value() -> None:
    first, second = radiograph("r1", 0), radiograph("r2", 20)
    pairs = rescore_times([first, second], [at(26), at(30)], LOOKBACK, VALIDITY)
    assert pairs == [(second, at(30))]


def test_a_value_past_the_validity_window_changes_nothing() -> None:
    assert rescore_times([radiograph("r1", 0)], [at(49)], LOOKBACK, VALIDITY) == []


def test_one_update_can_both_correct_the_past_and_rescore_the_present() -> None:
    first, second = radiograph("r1", 0), radiograph("r2", 20)
    # A value at 18 h lies in r2's look-back; one at 22 h is news after r2.
    pairs = rescore_times([first, second], [at(18), at(22)], LOOKBACK, VALIDITY)
    assert pairs == [(second, at(22))]
