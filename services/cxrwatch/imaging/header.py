"""What the Radiograph event says about an image besides its pixels.

* identity: Patient ID (the join key) and the strictly decoded name (see
  :mod:`cxrwatch.imaging.identity`);
* the study, series and SOP instance UIDs; a missing SOP Instance UID is an
  error, since the event's id is derived from it;
* acquisition time (see :mod:`cxrwatch.imaging.timestamps`);
* pixel spacing in mm (row, column): Pixel Spacing, else Imager Pixel Spacing
  (at the detector, so magnified by the source-to-detector geometry, but the
  best there is), else unknown. A spacing of zero or below means "not known",
  as RG1's ``0.000\\0.000`` does, and falls through to the next source.
"""

from dataclasses import dataclass
from datetime import datetime, tzinfo

from pydicom.dataset import Dataset

from cxrwatch.core.errors import InvalidInput
from cxrwatch.imaging.dataset import text, transfer_syntax, values
from cxrwatch.imaging.identity import patient_key, patient_name
from cxrwatch.imaging.timestamps import acquired_at, birth_date

_SEXES = ("M", "F", "O")


@dataclass(frozen=True)
class RadiographHeader:
    """The attributes of one image that travel with it or decide about it."""

    patient_key: str | None
    patient_name: str | None
    patient_name_problem: str | None
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    acquired_at: datetime | None
    acquired_at_source: str | None
    modality: str
    view_position: str | None
    body_part: str | None
    patient_sex: str | None
    patient_birth_date: str | None
    pixel_spacing_mm: tuple[float, float] | None
    pixel_aspect: float
    transfer_syntax_uid: str
    photometric_interpretation: str


def read_header(dataset: Dataset, facility_tz: tzinfo) -> RadiographHeader:
    """Read the event's attributes.

    Raises
    ------
    InvalidInput
        If the SOP Instance UID is missing, or a present date, time or offset
        is malformed.
    MissingPatient
        If the Patient ID cannot be decoded.
    """
    sop_instance_uid = text(dataset, "SOPInstanceUID")
    if sop_instance_uid is None:
        raise InvalidInput(
            "SOP Instance UID (0008,0018) is missing; without it the radiograph "
            "has no stable identity"
        )
    name = patient_name(dataset)
    when = acquired_at(dataset, facility_tz)
    spacing = pixel_spacing(dataset)
    sex = (text(dataset, "PatientSex") or "").upper()
    return RadiographHeader(
        patient_key=patient_key(dataset),
        patient_name=name.text,
        patient_name_problem=name.problem,
        study_instance_uid=text(dataset, "StudyInstanceUID") or "",
        series_instance_uid=text(dataset, "SeriesInstanceUID") or "",
        sop_instance_uid=sop_instance_uid,
        acquired_at=when[0] if when else None,
        acquired_at_source=when[1] if when else None,
        modality=(text(dataset, "Modality") or "").upper(),
        view_position=(text(dataset, "ViewPosition") or "").upper() or None,
        body_part=(text(dataset, "BodyPartExamined") or "").upper() or None,
        patient_sex=sex if sex in _SEXES else None,
        patient_birth_date=birth_date(dataset),
        pixel_spacing_mm=spacing,
        pixel_aspect=_pixel_aspect(dataset, spacing),
        transfer_syntax_uid=str(transfer_syntax(dataset)),
        photometric_interpretation=(
            text(dataset, "PhotometricInterpretation") or ""
        ).upper(),
    )


def pixel_spacing(dataset: Dataset) -> tuple[float, float] | None:
    """Row and column spacing in mm, or None when no source gives a positive one."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        found = values(dataset, keyword, float)
        if len(found) == 2 and found[0] > 0 and found[1] > 0:
            return found[0], found[1]
    return None


def _pixel_aspect(dataset: Dataset, spacing: tuple[float, float] | None) -> float:
    """Height over width of one pixel: from the spacing, else Pixel Aspect Ratio."""
    if spacing is not None:
        return spacing[0] / spacing[1]
    ratio = values(dataset, "PixelAspectRatio", float)
    if len(ratio) == 2 and ratio[0] > 0 and ratio[1] > 0:
        return ratio[0] / ratio[1]
    return 1.0
