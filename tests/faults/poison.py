"""Fifty messages no service can process, and the dead letter each must become.

Ten kinds, five of each, keyed by the scenario's imaged patients so that they
share partitions with live traffic:

* on ``ehr.observations.v1``: malformed JSON; a FHIR Observation whose unit
  is unknown; an HL7 v2 ORU^R01 without PID;
* on ``dicom.instances.v1``: a radiograph cut short mid pixel data (the
  decoder raises); bytes that are no DICOM at all;
* on the services' own topics: JSON that misses the schema's fields
  (radiograph, inference request, risk score); a clinical update that is not
  JSON; an inference request that passes the schema but whose image is not
  the size the model takes (it must not reach the model, nor stop a batch).

Each carries ``ce_id`` ``poison-NN-<kind>``; its dead letter must name the
service, the error class and a reason, and carry the original headers.
"""

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from cxrwatch.cli.publish import CONTENT_TYPES
from cxrwatch.core import topics
from cxrwatch.core.events import InferenceRequest, News2, Tensor
from cxrwatch.core.kafka import Output
from cxrwatch.scenario.dicom import reidentify
from pydicom.data import get_testdata_file

JSON = "application/json"


@dataclass(frozen=True)
class Poison:
    """One poison message and the dead letter it must become."""

    ce_id: str
    topic: str
    key: str
    value: bytes
    content_type: str
    service: str
    error_classes: tuple[str, ...]
    reason: str  # must appear in the dead letter's error message (any case)
    wave: int  # which wave of the scenario it is published in

    def output(self) -> Output:
        """The record to publish."""
        return Output(
            topic=self.topic,
            key=self.key,
            value=self.value,
            ce_type="org.cxrwatch.faults.poison.v1",
            ce_id=self.ce_id,
            ce_source="cxrwatch/faults",
            content_type=self.content_type,
        )


def poison_messages(
    keys: list[str], features: list[str], seed: int = 5, copies: int = 5
) -> list[Poison]:
    """``copies`` messages of each of the ten kinds, in a seeded order."""
    rng = random.Random(seed)
    kinds = _kinds(features)
    made: list[Poison] = []
    for copy in range(copies):
        for kind, build in kinds.items():
            number = len(made) + 1
            made.append(build(f"poison-{number:02d}-{kind}", rng.choice(keys), copy))
    return made


Builder = Any  # (ce_id, key, copy) -> Poison


def _kinds(features: list[str]) -> dict[str, Builder]:
    return {
        "fhir-malformed-json": _fhir_malformed,
        "fhir-unknown-unit": _fhir_unknown_unit,
        "hl7-without-pid": _hl7_without_pid,
        "dicom-truncated": _dicom_truncated,
        "dicom-not-dicom": _not_dicom,
        "radiograph-missing-fields": _radiograph_missing_fields,
        "update-not-json": _update_not_json,
        "request-missing-fields": _request_missing_fields,
        "request-wrong-image-size": lambda ce_id, key, copy: _request_wrong_size(
            ce_id, key, copy, features
        ),
        "score-missing-fields": _score_missing_fields,
    }


_CLINICAL_WAVES = (0, 2, 4)
_IMAGE_WAVES = (1, 3)
_SCORING_WAVES = (2, 4)  # where inference requests and scores flow


def _fhir_malformed(ce_id: str, key: str, copy: int) -> Poison:
    body = json.dumps(
        {"resourceType": "Observation", "id": ce_id, "status": "final"}
    ).encode()
    return Poison(
        ce_id,
        topics.EHR_OBSERVATIONS,
        key,
        body[: len(body) // 2],
        CONTENT_TYPES["fhir"],
        "clinical",
        ("InvalidInput",),
        "json",
        _CLINICAL_WAVES[copy % 3],
    )


def _fhir_unknown_unit(ce_id: str, key: str, copy: int) -> Poison:
    observation = {
        "resourceType": "Observation",
        "id": ce_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "59408-5"}]},
        "subject": {"reference": f"Patient/{key}"},
        "effectiveDateTime": datetime(2026, 1, 6, 3, 1 + copy, tzinfo=UTC).isoformat(),
        "valueQuantity": {
            "value": 93,
            "unit": "furlongs per fortnight",
            "system": "http://unitsofmeasure.org",
            "code": "[fur]/(14.d)",
        },
    }
    return Poison(
        ce_id,
        topics.EHR_OBSERVATIONS,
        key,
        json.dumps(observation).encode(),
        CONTENT_TYPES["fhir"],
        "clinical",
        ("InvalidInput",),
        "unit",
        _CLINICAL_WAVES[(copy + 1) % 3],
    )


def _hl7_without_pid(ce_id: str, key: str, copy: int) -> Poison:
    message = (
        "MSH|^~\\&|LIS|GENHOSP|CXRWATCH|GENHOSP|20260106120000+0000||"
        f"ORU^R01^ORU_R01|{ce_id}|P|2.5.1\r"
        "OBR|1|ORD1|FIL1|24323-8^Lab panel^LN|||20260106110000+0000\r"
        "OBX|1|NM|6690-2^Leukocytes^LN||7.0|10*3/uL|4.0-11.0|N|||F\r"
    )
    return Poison(
        ce_id,
        topics.EHR_OBSERVATIONS,
        key,
        message.encode(),
        CONTENT_TYPES["hl7"],
        "clinical",
        ("MissingPatient",),
        "pid",
        _CLINICAL_WAVES[(copy + 2) % 3],
    )


def _dicom_truncated(ce_id: str, key: str, copy: int) -> Poison:
    source = Path(str(get_testdata_file("RG1_J2KI.dcm")))
    whole = reidentify(
        source,
        patient_id=key,
        patient_name=f"Poison^{key}",
        birth_date=datetime(1950, 1, 1).date(),
        sex="F",
        acquired_at=datetime(2026, 1, 6, 9, copy, tzinfo=UTC),
        seed=ce_id,
    )
    return Poison(
        ce_id,
        topics.DICOM_INSTANCES,
        key,
        whole[: len(whole) * 3 // 5],
        CONTENT_TYPES["dicom"],
        "imaging",
        ("InvalidInput",),
        "truncat",
        _IMAGE_WAVES[copy % 2],
    )


def _not_dicom(ce_id: str, key: str, copy: int) -> Poison:
    return Poison(
        ce_id,
        topics.DICOM_INSTANCES,
        key,
        b"this is a JPEG, honest\xff\xd8\xff" + bytes(range(256)) * 4,
        CONTENT_TYPES["dicom"],
        "imaging",
        ("InvalidInput",),
        "dicom",
        _IMAGE_WAVES[(copy + 1) % 2],
    )


def _radiograph_missing_fields(ce_id: str, key: str, copy: int) -> Poison:
    body = json.dumps({"radiograph_id": ce_id, "patient_key": key}).encode()
    return Poison(
        ce_id,
        topics.IMAGING_RADIOGRAPHS,
        key,
        body,
        JSON,
        "joiner",
        ("InvalidInput",),
        "not a valid Radiograph",
        _IMAGE_WAVES[copy % 2],
    )


def _update_not_json(ce_id: str, key: str, copy: int) -> Poison:
    return Poison(
        ce_id,
        topics.CLINICAL_UPDATES,
        key,
        b'{"update_id": "' + ce_id.encode() + b'", "observations": [',
        JSON,
        "joiner",
        ("InvalidInput",),
        "not a valid ClinicalUpdate",
        _SCORING_WAVES[copy % 2],
    )


def _request_missing_fields(ce_id: str, key: str, copy: int) -> Poison:
    body = json.dumps({"request_id": ce_id, "patient_key": key}).encode()
    return Poison(
        ce_id,
        topics.INFERENCE_REQUESTS,
        key,
        body,
        JSON,
        "scorer",
        ("InvalidInput",),
        "not a valid InferenceRequest",
        _SCORING_WAVES[(copy + 1) % 2],
    )


def _request_wrong_size(ce_id: str, key: str, copy: int, features: list[str]) -> Poison:
    at = datetime(2026, 1, 6, 12, copy, tzinfo=UTC)
    request = InferenceRequest(
        request_id=ce_id,
        radiograph_id=ce_id,
        patient_key=key,
        acquired_at=at,
        as_of=at,
        trigger="radiograph",
        image=Tensor.from_array(np.zeros((1, 16, 16), dtype=np.float32)),
        features=features,
        clinical=[0.0] * len(features),
        clinical_mask=[0.0] * len(features),
        clinical_values={},
        news2=News2(),
    )
    return Poison(
        ce_id,
        topics.INFERENCE_REQUESTS,
        key,
        request.model_dump_json().encode(),
        JSON,
        "scorer",
        ("InvalidInput",),
        "image",
        _SCORING_WAVES[copy % 2],
    )


def _score_missing_fields(ce_id: str, key: str, copy: int) -> Poison:
    body = json.dumps({"score_id": ce_id, "patient_key": key, "p": 0.99}).encode()
    return Poison(
        ce_id,
        topics.RISK_SCORES,
        key,
        body,
        JSON,
        "alerter",
        ("InvalidInput",),
        "not a valid RiskScore",
        _SCORING_WAVES[(copy + 1) % 2],
    )
