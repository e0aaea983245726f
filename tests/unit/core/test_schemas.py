"""The committed schemas are exactly what the event models produce."""

import json
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from cxrwatch.core import topics
from cxrwatch.core.events import EVENT_MODELS, Alert, FeatureChange, News2, Tensor
from cxrwatch.core.schemas import render

SCHEMAS = Path(__file__).parents[3] / "schemas"


@pytest.mark.parametrize("topic", sorted(EVENT_MODELS))
def test_committed_schema_matches_model(topic: str) -> None:
    committed = (SCHEMAS / f"{topic}.json").read_text(encoding="utf-8")
    assert committed == render(topic), f"run `make schemas` after changing {topic}"


def test_every_json_topic_has_a_schema() -> None:
    raw_topics = {topics.DICOM_INSTANCES, topics.EHR_OBSERVATIONS}
    assert set(topics.ALL) - raw_topics == set(EVENT_MODELS)


def _alert() -> Alert:
    return Alert(
        alert_id="a1",
        patient_key="CXR-1",
        score_id="s1",
        radiograph_id="r1",
        raised_at=datetime(2026, 1, 2, 3, 4, tzinfo=UTC),
        reason="band-increase",
        band="high",
        previous_band="low",
        p_critical=0.7,
        previous_p_critical=0.1,
        progression_risk=0.4,
        changes=[FeatureChange(feature="spo2", previous=97, current=88, unit="%")],
        news2=News2(score=8, clinical_risk="high", components={"resp_rate": 2}),
        model_name="cxr_fusion",
        model_version="1",
    )


def test_a_serialised_alert_validates_against_its_schema() -> None:
    schema = json.loads((SCHEMAS / f"{topics.ALERTS}.json").read_text())
    jsonschema.validate(json.loads(_alert().model_dump_json()), schema)


def test_the_schema_refuses_an_unknown_band() -> None:
    schema = json.loads((SCHEMAS / f"{topics.ALERTS}.json").read_text())
    message = json.loads(_alert().model_dump_json())
    message["band"] = "extreme"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(message, schema)


def test_tensor_round_trip_is_exact_and_little_endian() -> None:
    array = np.arange(6, dtype=np.float32).reshape(1, 2, 3) / 7
    tensor = Tensor.from_array(array)
    assert tensor.shape == [1, 2, 3]
    assert np.array_equal(tensor.to_array(), array)
    # 1/7 as float32 little endian is 0x3E124925: bytes 25 49 12 3E.
    import base64

    assert base64.b64decode(tensor.data)[4:8] == bytes([0x25, 0x49, 0x12, 0x3E])
