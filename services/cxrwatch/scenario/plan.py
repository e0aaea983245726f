"""The sample scenario: three patients over three days, and the public examples.

* ``CXR-1001`` deteriorates: normal vitals and labs on day 0, then falling
  SpO2, rising respiratory rate, oxygen started and CRP climbing on day 1; an
  alert must fire.
* ``CXR-1002`` stays well: normal values throughout, three radiographs in
  three transfer syntaxes; no alert may fire.
* ``CXR-1003`` has only a tibia, a hip and a dog's thorax: none is scored.
* The FHIR and HL7 examples under ``shared/data`` are replayed as they are,
  with one truncated DICOM and one HL7 message without PID that must be
  dead-lettered while everything else flows.

Radiographs are real chest CRs (pydicom-data RG1 in three syntaxes, the NEMA
JPEG-LS RG1 and fo-dicom's 1993 chest), re-identified with new UIDs.
"""

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pydicom.data import get_testdata_file

from cxrwatch.scenario.dicom import reidentify
from cxrwatch.scenario.messages import (
    LabResult,
    VitalSigns,
    oru_r01,
    patient,
    vital_signs_bundle,
)

DETERIORATING = "CXR-1001"
STABLE = "CXR-1002"
NOT_CHEST = "CXR-1003"


@dataclass(frozen=True)
class Step:
    """One message of the scenario, in the order it is delivered."""

    kind: str  # dicom | fhir | hl7
    path: str
    key: str
    at: str
    note: str


@dataclass(frozen=True)
class _Labs:
    wbc: float
    lymphocytes: float
    crp_mg_dl: float
    ldh: float


class _Writer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.steps: list[Step] = []
        for folder in ("dicom", "fhir", "hl7"):
            (root / folder).mkdir(parents=True, exist_ok=True)

    def add(
        self, kind: str, name: str, body: bytes, key: str, at: datetime, note: str
    ) -> None:
        path = Path(kind) / name
        (self.root / path).write_bytes(body)
        self.steps.append(Step(kind, str(path), key, at.isoformat(), note))


def shared_data_dir() -> Path | None:
    """``shared/data`` beside the checkout, when it is there."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data"
        if (candidate / "INVENTORY.md").exists():
            return candidate
    return None


def build(root: Path, anchor: datetime | None = None) -> Path:
    """Write the scenario's files and ``scenario.json`` under ``root``.

    ``anchor`` is midnight UTC of day 0; by default three days before today, so
    the scenario ends yesterday and no message is timed in the future.
    """
    if anchor is None:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        anchor = today - timedelta(days=3)
    writer = _Writer(root)
    shared = shared_data_dir()
    _public_examples(writer, shared, anchor)
    _deteriorating(writer, anchor, shared)
    _stable(writer, anchor, shared)
    _not_chest(writer, anchor, shared)
    _malformed(writer, anchor)
    writer.steps.sort(key=lambda step: step.at)
    index = root / "scenario.json"
    index.write_text(
        json.dumps(
            {"anchor": anchor.isoformat(), "steps": [asdict(s) for s in writer.steps]},
            indent=1,
        )
    )
    return index


def _radiograph(
    writer: _Writer,
    source: Path,
    patient_id: str,
    at: datetime,
    note: str,
    *,
    birth: date,
    sex: str,
) -> None:
    body = reidentify(
        source,
        patient_id=patient_id,
        patient_name=f"Scenario^{patient_id}",
        birth_date=birth,
        sex=sex,
        acquired_at=at,
        seed=f"{patient_id}-{at.isoformat()}",
    )
    name = f"{patient_id}-{at:%Y%m%dT%H%M}-{source.stem}.dcm"
    writer.add("dicom", name, body, patient_id, at, note)


def _vitals(
    writer: _Writer,
    patient_id: str,
    at: datetime,
    v: VitalSigns,
    demographics: dict[str, object] | None = None,
) -> None:
    body = vital_signs_bundle(patient_id, at, v, demographics)
    writer.add(
        "fhir",
        f"{patient_id}-{at:%Y%m%dT%H%M}-vitals.json",
        body,
        patient_id,
        at,
        "vital signs (FHIR transaction Bundle)",
    )


def _labs(
    writer: _Writer,
    patient_id: str,
    at: datetime,
    labs: _Labs,
    *,
    birth: date,
    sex: str,
) -> None:
    control = f"{patient_id[-4:]}{at:%d%H%M}"
    message = oru_r01(
        control,
        patient_id,
        family="Scenario",
        given=patient_id,
        birth_date=birth,
        sex=sex,
        collected_at=at,
        sent_at=at + timedelta(minutes=40),
        results=[
            LabResult(
                "6690-2",
                "Leukocytes",
                labs.wbc,
                "10*3/uL",
                "4.0-11.0",
                "H" if labs.wbc > 11 else "N",
            ),
            LabResult(
                "731-0",
                "Lymphocytes",
                labs.lymphocytes,
                "10*3/uL",
                "1.0-4.0",
                "L" if labs.lymphocytes < 1 else "N",
            ),
            LabResult(
                "1988-5",
                "C reactive protein",
                labs.crp_mg_dl,
                "mg/dL",
                "0.0-0.5",
                "H" if labs.crp_mg_dl > 0.5 else "N",
            ),
            LabResult(
                "2532-0",
                "Lactate dehydrogenase",
                labs.ldh,
                "U/L",
                "140-280",
                "H" if labs.ldh > 280 else "N",
            ),
        ],
    )
    writer.add(
        "hl7",
        f"{patient_id}-{at:%Y%m%dT%H%M}-labs.hl7",
        message.encode(),
        patient_id,
        at,
        "laboratory results (HL7 v2 ORU^R01)",
    )


def _clock(d0: datetime) -> Callable[[int, float], datetime]:
    """Times as (day, hour) after midnight of day 0."""

    def at(day: int, hour: float) -> datetime:
        return d0 + timedelta(days=day, hours=hour)

    return at


def _chest(name: str) -> Path:
    found = get_testdata_file(name)
    if found is None:
        raise FileNotFoundError(
            f"{name} is not in pydicom-data; pip install pydicom-data"
        )
    return Path(str(found))


def _deteriorating(writer: _Writer, d0: datetime, shared: Path | None) -> None:
    pid, birth, sex = DETERIORATING, date(1951, 6, 2), "M"
    h = _clock(d0)
    _vitals(
        writer,
        pid,
        h(0, 7.5),
        VitalSigns(96, 17, 80, 37.0, 132, 80),
        patient(pid, gender="male", birth_date=birth),
    )
    _labs(writer, pid, h(0, 7.75), _Labs(7.4, 1.6, 0.9, 205), birth=birth, sex=sex)
    _radiograph(
        writer,
        _chest("RG1_UNCR.dcm"),
        pid,
        h(0, 9),
        "admission chest PA",
        birth=birth,
        sex=sex,
    )
    _vitals(
        writer,
        pid,
        h(0, 20),
        VitalSigns(94, 21, 92, 37.8, 126, 78, temperature_in_f=True),
    )
    _vitals(writer, pid, h(1, 6), VitalSigns(91, 25, 104, 38.3, 118, 72, 2.0))
    _labs(writer, pid, h(1, 6.5), _Labs(12.9, 0.8, 9.6, 380), birth=birth, sex=sex)
    _radiograph(
        writer,
        _chest("RG1_J2KR.dcm"),
        pid,
        h(1, 8),
        "follow-up chest",
        birth=birth,
        sex=sex,
    )
    _vitals(writer, pid, h(1, 14), VitalSigns(87, 31, 121, 38.8, 104, 62, 6.0))
    _labs(writer, pid, h(1, 14.5), _Labs(15.2, 0.5, 17.5, 490), birth=birth, sex=sex)


def _stable(writer: _Writer, d0: datetime, shared: Path | None) -> None:
    pid, birth, sex = STABLE, date(1968, 11, 20), "F"
    h = _clock(d0)
    _vitals(
        writer,
        pid,
        h(0, 8.2),
        VitalSigns(98, 15, 72, 36.7, 118, 76),
        patient(pid, gender="female", birth_date=birth),
    )
    _labs(writer, pid, h(0, 8.3), _Labs(6.1, 2.1, 0.3, 170), birth=birth, sex=sex)
    if shared is not None:
        source = shared / "dicom" / "fodicom__CR-MONO1-10-chest.dcm"
        _radiograph(
            writer,
            source,
            pid,
            h(0, 10),
            "chest PA (1993 CR, no file meta)",
            birth=birth,
            sex=sex,
        )
    _vitals(writer, pid, h(1, 9), VitalSigns(97, 16, 75, 36.9, 121, 78))
    _radiograph(
        writer,
        _chest("RG1_J2KI.dcm"),
        pid,
        h(1, 10),
        "chest PA, lossy J2K",
        birth=birth,
        sex=sex,
    )
    _vitals(writer, pid, h(2, 9), VitalSigns(97, 14, 70, 36.8, 119, 77))
    if shared is not None:
        source = shared / "dicom" / "dtf_WG04__RG1_JLSN.dcm"
        _radiograph(
            writer, source, pid, h(2, 10), "chest PA, JPEG-LS", birth=birth, sex=sex
        )


def _not_chest(writer: _Writer, d0: datetime, shared: Path | None) -> None:
    pid, birth, sex = NOT_CHEST, date(1990, 1, 15), "F"
    at = d0 + timedelta(hours=11)
    _radiograph(
        writer,
        _chest("RG3_J2KR.dcm"),
        pid,
        at,
        "tibia: not scored",
        birth=birth,
        sex=sex,
    )
    if shared is not None:
        for i, name in enumerate(("dtf_WG04__RG2_JPLL.dcm", "highdicom__dx_image.dcm")):
            _radiograph(
                writer,
                shared / "dicom" / name,
                pid,
                at + timedelta(minutes=10 * (i + 1)),
                "not a human chest",
                birth=birth,
                sex=sex,
            )


def _public_examples(writer: _Writer, shared: Path | None, d0: datetime) -> None:
    if shared is None:
        return
    for path in sorted((shared / "fhir_r4").glob("*.json")):
        writer.add(
            "fhir",
            "example-" + path.name,
            path.read_bytes(),
            "example",
            d0,
            "FHIR R4 specification example",
        )
    for path in sorted((shared / "hl7v2").glob("*.hl7")):
        writer.add(
            "hl7",
            "example-" + path.name,
            path.read_bytes(),
            "example",
            d0,
            "public HL7 v2 example",
        )


def _malformed(writer: _Writer, d0: datetime) -> None:
    whole = _chest("RG1_UNCR.dcm").read_bytes()
    writer.add(
        "dicom",
        "malformed-truncated.dcm",
        whole[: len(whole) // 2],
        DETERIORATING,
        d0,
        "truncated DICOM: must be dead-lettered",
    )
    no_pid = (
        "MSH|^~\\&|LIS|GENHOSP|CXRWATCH|GENHOSP|20260101120000+0000||ORU^R01^ORU_R01|"
        "BAD0001|P|2.5.1\rOBR|1|ORD1|FIL1|24323-8^Lab panel^LN\r"
        "OBX|1|NM|6690-2^Leukocytes^LN||7.0|10*3/uL|4.0-11.0|N|||F\r"
    )
    writer.add(
        "hl7",
        "malformed-no-pid.hl7",
        no_pid.encode(),
        "unknown",
        d0,
        "HL7 without PID: must be dead-lettered",
    )
