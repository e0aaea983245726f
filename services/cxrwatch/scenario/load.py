"""A large, deterministic scenario for load and fault-injection runs.

Fifty patients over three and a third days, in the formats hospitals send:

* twenty *imaged* patients, each with a chest radiograph on day 1 and day 2
  (forty radiographs: pydicom-data's RG1 in JPEG 2000, lossy or lossless,
  which decode at 1/8 scale in tens of milliseconds), vital signs every four
  hours as FHIR R4 transaction Bundles and laboratory results every twelve
  hours as HL7 v2 ORU^R01. Eight of them deteriorate (four from day 1, four
  from day 2: falling SpO2, oxygen started, rising respiratory rate, heart
  rate, temperature, CRP and LDH, falling lymphocytes); twelve stay well;
* thirty patients who are never imaged, with vitals every two hours and labs
  every eight: clinical volume that is stored and joined but never scored.

About 2,040 clinical messages and 40 DICOM objects in all. The same
arguments give byte-identical files: values come from a seeded generator,
UIDs from seeds, and the anchor date is fixed unless given.

The messages are cut into five *waves*, delivered one after another:
``0`` clinical data before the first radiographs, ``1`` the first
radiographs, ``2`` clinical data between them, ``3`` the second radiographs,
``4`` clinical data after them. Within a patient every message has its own
event time and the waves follow event time. A consumer that replays a wave
only once the previous one is fully processed gets a result that does not
depend on how the services' topics interleave: the joiner scores a
radiograph against whatever the clinical store holds when the radiograph
arrives, so without waves the set of inference requests (and so of score
and alert ids) would depend on whether the imaging or the clinical service
ran ahead.
"""

import json
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydicom.data import get_testdata_file

from cxrwatch.scenario.dicom import reidentify
from cxrwatch.scenario.messages import (
    LabResult,
    VitalSigns,
    oru_r01,
    patient,
    vital_signs_bundle,
)

LOAD_ANCHOR = datetime(2026, 1, 5, tzinfo=UTC)
"""Midnight UTC of day 0 unless the caller gives another."""

WAVES = (
    "clinical-before",
    "radiographs-1",
    "clinical-between",
    "radiographs-2",
    "clinical-after",
)

_FIRST_IMAGE = timedelta(hours=33)
_SECOND_IMAGE = timedelta(hours=57)
_END = timedelta(hours=80)
_SOURCES = ("RG1_J2KI.dcm", "RG1_J2KI.dcm", "RG1_J2KI.dcm", "RG1_J2KR.dcm")


@dataclass(frozen=True)
class LoadPlan:
    """How many patients of each kind, and the seed of their values."""

    imaged: int = 20
    deteriorating: int = 8
    unimaged: int = 30
    seed: int = 20260105


@dataclass(frozen=True)
class _Person:
    key: str
    birth: date
    sex: str  # M | F
    offset: timedelta  # staggers this patient's clock against the others
    onset: timedelta | None  # when deterioration starts; None: stays well
    fahrenheit: bool  # temperature sent in [degF]
    crp_unit: str  # mg/dL or mg/L


@dataclass(frozen=True)
class _State:
    """Clinical values at one moment; ``severity`` 0 is well, 1 very ill."""

    spo2: float
    resp_rate: float
    heart_rate: float
    temperature: float
    systolic: float
    diastolic: float
    oxygen_l_min: float
    wbc: float
    lymphocytes: float
    crp_mg_l: float
    ldh: float


def deteriorating_keys(plan: LoadPlan = LoadPlan()) -> list[str]:
    """Keys of the patients who deteriorate."""
    return [_imaged_key(i) for i in range(plan.deteriorating)]


def stable_keys(plan: LoadPlan = LoadPlan()) -> list[str]:
    """Keys of the imaged patients who stay well."""
    return [_imaged_key(i) for i in range(plan.deteriorating, plan.imaged)]


def unimaged_keys(plan: LoadPlan = LoadPlan()) -> list[str]:
    """Keys of the patients who have clinical data only."""
    return [f"LD-{2001 + i}" for i in range(plan.unimaged)]


def _imaged_key(index: int) -> str:
    return f"LD-{1001 + index}"


class _Writer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.steps: list[dict[str, Any]] = []
        for folder in ("dicom", "fhir", "hl7"):
            (root / folder).mkdir(parents=True, exist_ok=True)

    def add(
        self, kind: str, name: str, body: bytes, key: str, at: datetime, wave: int
    ) -> None:
        path = Path(kind) / name
        (self.root / path).write_bytes(body)
        self.steps.append(
            {
                "kind": kind,
                "path": str(path),
                "key": key,
                "at": at.isoformat(),
                "note": WAVES[wave],
                "wave": wave,
            }
        )


def build_load(
    root: Path, plan: LoadPlan = LoadPlan(), anchor: datetime = LOAD_ANCHOR
) -> Path:
    """Write the scenario's files and ``scenario.json`` under ``root``.

    ``scenario.json`` holds the anchor, the waves, the steps (kind, path, key,
    event time, note, wave) in delivery order, and which patients deteriorate,
    stay well or are never imaged.
    """
    rng = random.Random(plan.seed)
    writer = _Writer(root)
    people = [_imaged(i, plan, rng) for i in range(plan.imaged)]
    for person in people:
        _clinical(writer, person, anchor, rng, vitals_every=4, labs_every=12)
        _radiographs(writer, person, anchor)
    for i, key in enumerate(unimaged_keys(plan)):
        person = _Person(
            key=key,
            birth=date(1935 + (i * 7) % 60, 1 + i % 12, 1 + (i * 5) % 28),
            sex="MF"[i % 2],
            offset=timedelta(minutes=3 * i + 1),
            onset=None,
            fahrenheit=i % 5 == 0,
            crp_unit="mg/L",
        )
        _clinical(writer, person, anchor, rng, vitals_every=2, labs_every=8)
    writer.steps.sort(key=lambda s: (s["wave"], s["at"], s["key"], s["path"]))
    index = root / "scenario.json"
    index.write_text(
        json.dumps(
            {
                "anchor": anchor.isoformat(),
                "waves": list(WAVES),
                "deteriorating": deteriorating_keys(plan),
                "stable": stable_keys(plan),
                "unimaged": unimaged_keys(plan),
                "steps": writer.steps,
            },
            indent=1,
        )
    )
    return index


def _imaged(index: int, plan: LoadPlan, rng: random.Random) -> _Person:
    onset: timedelta | None = None
    if index < plan.deteriorating:
        # Half fall ill between the two radiographs, half after the second.
        hours = 36 + rng.uniform(0, 6) if index % 2 == 0 else 60 + rng.uniform(0, 4)
        onset = timedelta(hours=hours)
    return _Person(
        key=_imaged_key(index),
        birth=date(1940 + (index * 3) % 45, 1 + (index * 5) % 12, 1 + index % 28),
        sex="MF"[index % 2],
        offset=timedelta(minutes=4 * index + 2),
        onset=onset,
        fahrenheit=index % 4 == 3,
        crp_unit="mg/dL" if index % 3 else "mg/L",
    )


def _wave(person: _Person, since_anchor: timedelta) -> int:
    first = _FIRST_IMAGE + person.offset
    second = _SECOND_IMAGE + person.offset
    if since_anchor < first:
        return 0
    if since_anchor == first:
        return 1
    if since_anchor < second:
        return 2
    return 3 if since_anchor == second else 4


def _severity(person: _Person, since_anchor: timedelta) -> float:
    """0 before the onset, rising to 1 over the next eighteen hours."""
    if person.onset is None or since_anchor <= person.onset:
        return 0.0
    return min(1.0, (since_anchor - person.onset) / timedelta(hours=18))


def _state(severity: float, rng: random.Random) -> _State:
    def jitter(spread: float) -> float:
        return rng.uniform(-spread, spread)

    s = severity
    return _State(
        spo2=round(min(100.0, 97.5 - 11 * s + jitter(1)), 0),
        resp_rate=round(15 + 15 * s + jitter(1.5), 0),
        heart_rate=round(74 + 42 * s + jitter(5), 0),
        temperature=round(36.8 + 2.1 * s + jitter(0.2), 1),
        systolic=round(124 - 24 * s + jitter(6), 0),
        diastolic=round(78 - 14 * s + jitter(4), 0),
        oxygen_l_min=0.0 if s < 0.25 else round(2 + 6 * s, 0),
        wbc=round(6.5 + 9 * s + jitter(0.6), 1),
        lymphocytes=round(max(0.2, 1.9 - 1.5 * s + jitter(0.15)), 2),
        crp_mg_l=round(4.5 + 180 * s + jitter(1.5), 1),
        ldh=round(185 + 320 * s + jitter(12), 0),
    )


def _clinical(
    writer: _Writer,
    person: _Person,
    anchor: datetime,
    rng: random.Random,
    *,
    vitals_every: int,
    labs_every: int,
) -> None:
    first = True
    for hour in range(0, int(_END / timedelta(hours=1)), vitals_every):
        since = timedelta(hours=hour) + person.offset
        state = _state(_severity(person, since), rng)
        _vitals(writer, person, anchor, since, state, demographics=first)
        first = False
    # Labs are drawn two hours after a vitals round, so no two messages of a
    # patient share an event time.
    for hour in range(2, int(_END / timedelta(hours=1)), labs_every):
        since = timedelta(hours=hour) + person.offset
        _labs(writer, person, anchor, since, _state(_severity(person, since), rng))


def _vitals(
    writer: _Writer,
    person: _Person,
    anchor: datetime,
    since: timedelta,
    v: _State,
    *,
    demographics: bool,
) -> None:
    at = anchor + since
    signs = VitalSigns(
        spo2=v.spo2,
        resp_rate=v.resp_rate,
        heart_rate=v.heart_rate,
        temperature=v.temperature,
        systolic=v.systolic,
        diastolic=v.diastolic,
        oxygen_l_min=v.oxygen_l_min,
        temperature_in_f=person.fahrenheit,
    )
    gender = "male" if person.sex == "M" else "female"
    body = vital_signs_bundle(
        person.key,
        at,
        signs,
        patient(person.key, gender=gender, birth_date=person.birth)
        if demographics
        else None,
    )
    stamp = f"{person.key}-{at:%Y%m%dT%H%M}"
    writer.add(
        "fhir", f"{stamp}-vitals.json", body, person.key, at, _wave(person, since)
    )


def _labs(
    writer: _Writer, person: _Person, anchor: datetime, since: timedelta, v: _State
) -> None:
    at = anchor + since
    crp = v.crp_mg_l / 10 if person.crp_unit == "mg/dL" else v.crp_mg_l
    crp_range = "0.0-0.5" if person.crp_unit == "mg/dL" else "0-5"
    results = [
        LabResult(
            "6690-2", "Leukocytes", v.wbc, "10*3/uL", "4.0-11.0", _flag(v.wbc, 4, 11)
        ),
        LabResult(
            "731-0",
            "Lymphocytes",
            v.lymphocytes,
            "10*3/uL",
            "1.0-4.0",
            _flag(v.lymphocytes, 1, 4),
        ),
        LabResult(
            "1988-5",
            "C reactive protein",
            round(crp, 2),
            person.crp_unit,
            crp_range,
            "H" if v.crp_mg_l > 5 else "N",
        ),
        LabResult(
            "2532-0",
            "Lactate dehydrogenase",
            v.ldh,
            "U/L",
            "140-280",
            _flag(v.ldh, 140, 280),
        ),
    ]
    control = f"{person.key[-4:]}{at:%d%H%M}"
    message = oru_r01(
        control,
        person.key,
        family="Load",
        given=person.key,
        birth_date=person.birth,
        sex=person.sex,
        collected_at=at,
        sent_at=at + timedelta(minutes=35),
        results=results,
    )
    writer.add(
        "hl7",
        f"{person.key}-{at:%Y%m%dT%H%M}-labs.hl7",
        message.encode(),
        person.key,
        at,
        _wave(person, since),
    )


def _flag(value: float, low: float, high: float) -> str:
    if value < low:
        return "L"
    return "H" if value > high else "N"


def _radiographs(writer: _Writer, person: _Person, anchor: datetime) -> None:
    number = int(person.key[-4:])
    for round_, since in enumerate((_FIRST_IMAGE, _SECOND_IMAGE), start=1):
        since = since + person.offset
        at = anchor + since
        source = _testdata(_SOURCES[(number + round_) % len(_SOURCES)])
        body = reidentify(
            source,
            patient_id=person.key,
            patient_name=f"Load^{person.key}",
            birth_date=person.birth,
            sex=person.sex,
            acquired_at=at,
            seed=f"load-{person.key}-{at.isoformat()}",
        )
        name = f"{person.key}-{at:%Y%m%dT%H%M}-{source.stem}.dcm"
        writer.add("dicom", name, body, person.key, at, _wave(person, since))


def _testdata(name: str) -> Path:
    found = get_testdata_file(name)
    if found is None:
        raise FileNotFoundError(
            f"{name} is not in pydicom-data; pip install pydicom-data"
        )
    return Path(str(found))
