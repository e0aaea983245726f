"""FHIR R4 resources and HL7 v2 ORU^R01 messages for the scenario's patients.

Written the way hospital interfaces send them: FHIR vital signs with UCUM
quantities and LOINC codes, HL7 v2.5.1 results with OBX-14 observation times.
"""

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"
MRN_SYSTEM = "urn:oid:2.16.840.1.113883.19.5"


@dataclass(frozen=True)
class Vital:
    """One vital sign: LOINC code, display, value and UCUM unit."""

    loinc: str
    display: str
    value: float
    unit: str


def patient(patient_id: str, *, gender: str, birth_date: date) -> dict[str, Any]:
    """A FHIR Patient with the hospital MRN."""
    return {
        "resourceType": "Patient",
        "id": patient_id,
        "identifier": [{"system": MRN_SYSTEM, "value": patient_id}],
        "gender": gender,
        "birthDate": birth_date.isoformat(),
    }


def observation(
    observation_id: str, patient_id: str, vital: Vital, at: datetime
) -> dict[str, Any]:
    """A final vital-sign Observation with a valueQuantity."""
    return {
        "resourceType": "Observation",
        "id": observation_id,
        "meta": {"versionId": "1"},
        "status": "final",
        "category": [_category("vital-signs", "Vital Signs")],
        "code": {
            "coding": [{"system": LOINC, "code": vital.loinc, "display": vital.display}]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": at.isoformat(),
        "valueQuantity": {
            "value": vital.value,
            "unit": vital.unit,
            "system": UCUM,
            "code": vital.unit,
        },
    }


def blood_pressure(
    observation_id: str,
    patient_id: str,
    systolic: float,
    diastolic: float,
    at: datetime,
) -> dict[str, Any]:
    """A blood-pressure panel (85354-9) with its two components."""

    def component(code: str, display: str, value: float) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            "valueQuantity": {
                "value": value,
                "unit": "mmHg",
                "system": UCUM,
                "code": "mm[Hg]",
            },
        }

    return {
        "resourceType": "Observation",
        "id": observation_id,
        "meta": {"versionId": "1"},
        "status": "final",
        "category": [_category("vital-signs", "Vital Signs")],
        "code": {
            "coding": [
                {"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}
            ]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": at.isoformat(),
        "component": [
            component("8480-6", "Systolic blood pressure", systolic),
            component("8462-4", "Diastolic blood pressure", diastolic),
        ],
    }


@dataclass(frozen=True)
class VitalSigns:
    """One set of bedside observations, as a nurse charts them."""

    spo2: float
    resp_rate: float
    heart_rate: float
    temperature: float
    systolic: float
    diastolic: float
    oxygen_l_min: float = 0.0
    temperature_in_f: bool = False


def vital_signs_bundle(
    patient_id: str,
    at: datetime,
    signs: VitalSigns,
    demographics: dict[str, Any] | None = None,
) -> bytes:
    """A transaction Bundle of the vital signs (and the Patient, if given), as JSON."""
    stamp = f"{patient_id}-{at:%Y%m%dT%H%M}"
    temperature = (
        Vital(
            "8310-5",
            "Body temperature",
            round(signs.temperature * 9 / 5 + 32, 1),
            "[degF]",
        )
        if signs.temperature_in_f
        else Vital("8310-5", "Body temperature", signs.temperature, "Cel")
    )
    vitals = [
        Vital("59408-5", "Oxygen saturation by pulse oximetry", signs.spo2, "%"),
        Vital("9279-1", "Respiratory rate", signs.resp_rate, "/min"),
        Vital("8867-4", "Heart rate", signs.heart_rate, "/min"),
        temperature,
        Vital("3151-8", "Inhaled oxygen flow rate", signs.oxygen_l_min, "L/min"),
    ]
    resources = [demographics] if demographics is not None else []
    resources += [
        observation(f"{stamp}-{vital.loinc}", patient_id, vital, at) for vital in vitals
    ]
    resources.append(
        blood_pressure(f"{stamp}-bp", patient_id, signs.systolic, signs.diastolic, at)
    )
    return json.dumps(bundle(f"{stamp}-vitals", resources), indent=1).encode()


def bundle(bundle_id: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """A transaction Bundle that creates or updates each resource."""
    return {
        "resourceType": "Bundle",
        "id": bundle_id,
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{bundle_id}-{i}",
                "resource": resource,
                "request": {
                    "method": "PUT",
                    "url": f"{resource['resourceType']}/{resource['id']}",
                },
            }
            for i, resource in enumerate(resources)
        ],
    }


@dataclass(frozen=True)
class LabResult:
    """One OBX: LOINC code, display, value, unit, reference range, flag."""

    loinc: str
    display: str
    value: float
    unit: str
    reference_range: str
    flag: str = "N"


def oru_r01(
    control_id: str,
    patient_id: str,
    *,
    family: str,
    given: str,
    birth_date: date,
    sex: str,
    collected_at: datetime,
    sent_at: datetime,
    results: list[LabResult],
) -> str:
    """An HL7 v2.5.1 ORU^R01 with one OBR and an OBX per result, CR-separated."""
    collected = _hl7_time(collected_at)
    segments = [
        f"MSH|^~\\&|LIS|GENHOSP|CXRWATCH|GENHOSP|{_hl7_time(sent_at)}||"
        f"ORU^R01^ORU_R01|{control_id}|P|2.5.1",
        f"PID|1||{patient_id}^^^GENHOSP^MR||{family}^{given}||"
        f"{birth_date.strftime('%Y%m%d')}|{sex}",
        f"OBR|1|ORD{control_id}|FIL{control_id}|24323-8^Lab panel^LN|||{collected}",
    ]
    for set_id, result in enumerate(results, start=1):
        segments.append(
            f"OBX|{set_id}|NM|{result.loinc}^{result.display}^LN||{result.value}|"
            f"{result.unit}|{result.reference_range}|{result.flag}|||F|||{collected}"
        )
    return "\r".join(segments) + "\r"


def _category(code: str, display: str) -> dict[str, Any]:
    return {
        "coding": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": code,
                "display": display,
            }
        ]
    }


def _hl7_time(at: datetime) -> str:
    return at.strftime("%Y%m%d%H%M%S%z")
