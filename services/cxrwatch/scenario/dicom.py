"""Re-identify real radiographs as a scenario's patients.

Each source file keeps its pixel data and transfer syntax untouched; the
patient module, the dates and every UID are replaced, so the same image can
stand for several patients and studies without linking back to its source.
"""

from datetime import date, datetime
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

# Attributes that could point back at the source patient or study.
_DROPPED = (
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientAddress",
    "IssuerOfPatientID",
)


def reidentify(
    source: Path,
    *,
    patient_id: str,
    patient_name: str,
    birth_date: date,
    sex: str,
    acquired_at: datetime,
    seed: str,
) -> bytes:
    """Return ``source`` re-written for another patient and acquisition time.

    ``seed`` makes the new UIDs reproducible: the same seed gives the same
    study, series and instance UIDs.
    """
    dataset = pydicom.dcmread(source, force=True)
    dataset.PatientID = patient_id
    dataset.PatientName = patient_name
    dataset.PatientBirthDate = birth_date.strftime("%Y%m%d")
    dataset.PatientSex = sex
    for keyword in _DROPPED:
        if keyword in dataset:
            delattr(dataset, keyword)
    _set_times(dataset, acquired_at)
    _set_uids(dataset, seed)
    buffer = BytesIO()
    has_meta = "TransferSyntaxUID" in getattr(dataset, "file_meta", Dataset())
    dataset.save_as(buffer, enforce_file_format=has_meta)
    return buffer.getvalue()


def _set_times(dataset: Dataset, acquired_at: datetime) -> None:
    day = acquired_at.strftime("%Y%m%d")
    clock = acquired_at.strftime("%H%M%S")
    for prefix in ("Study", "Series", "Content", "Acquisition"):
        setattr(dataset, f"{prefix}Date", day)
        setattr(dataset, f"{prefix}Time", clock)
    dataset.AcquisitionDateTime = day + clock
    # The scenario's times are UTC; a source's own offset would shift them.
    dataset.TimezoneOffsetFromUTC = "+0000"
    dataset.AccessionNumber = "A" + day + clock


def _set_uids(dataset: Dataset, seed: str) -> None:
    study = generate_uid(entropy_srcs=[seed, "study"])
    series = generate_uid(entropy_srcs=[seed, "series"])
    instance = generate_uid(entropy_srcs=[seed, "instance"])
    dataset.StudyInstanceUID = study
    dataset.SeriesInstanceUID = series
    dataset.SOPInstanceUID = instance
    meta = getattr(dataset, "file_meta", None)
    if meta is not None and "MediaStorageSOPInstanceUID" in meta:
        meta.MediaStorageSOPInstanceUID = instance
