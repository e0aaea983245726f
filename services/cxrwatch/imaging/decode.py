"""One DICOM object to one model-ready radiograph: :func:`read_radiograph`.

The steps, each in its own module:

1. parse the bytes, inferring the transfer syntax of a bare data set
   (:mod:`~cxrwatch.imaging.dataset`);
2. ask the policy whether this is a radiograph to score, before any pixel is
   decoded (:mod:`~cxrwatch.imaging.policy`);
3. read the header: identity, UIDs, time, spacing (:mod:`~cxrwatch.imaging.header`);
4. decode the first frame's stored values, at reduced resolution where the
   codec allows (:mod:`~cxrwatch.imaging.pixel_data`);
5. apply the grayscale pipeline and area-average into the letterbox, a strip
   of rows at a time (:mod:`~cxrwatch.imaging.grayscale`,
   :mod:`~cxrwatch.imaging.resampling`).

The result is float32 ``[1, H, W]`` in the manifest's range (``[0, 1]``),
MONOCHROME2 polarity: lungs dark, bone bright.
"""

from dataclasses import dataclass
from datetime import datetime, tzinfo

import numpy as np

from cxrwatch.core.errors import ContractMismatch, InvalidInput, MissingPatient
from cxrwatch.core.events import Radiograph, Tensor
from cxrwatch.core.ids import checked_patient_key, deterministic_id
from cxrwatch.core.manifest import ImageSpec
from cxrwatch.imaging.dataset import parse_dataset
from cxrwatch.imaging.grayscale import GrayscalePipeline
from cxrwatch.imaging.header import RadiographHeader, read_header
from cxrwatch.imaging.pixel_data import check_dimensions, decode_stored_values
from cxrwatch.imaging.policy import CHEST_RADIOGRAPHS, ScoringPolicy
from cxrwatch.imaging.resampling import Letterbox, resample

CE_TYPE = "org.cxrwatch.radiograph.v1"


@dataclass(frozen=True)
class DecodedRadiograph:
    """A radiograph's model input and the header that goes with it."""

    header: RadiographHeader
    pixels: np.ndarray
    reduction: int

    @property
    def patient_name(self) -> str | None:
        """The decoded name, for checks only; never logged, never in the event."""
        return self.header.patient_name

    @property
    def radiograph_id(self) -> str:
        """Derived from the SOP Instance UID: a redelivery gives the same id."""
        return deterministic_id("radiograph", self.header.sop_instance_uid)

    def to_event(self) -> Radiograph:
        """The ``imaging.radiographs.v1`` event.

        Raises
        ------
        MissingPatient
            If the object has no Patient ID: it must never be joined to anyone.
        InvalidInput
            If it has no complete acquisition date and time, or a modality the
            event does not allow.
        """
        header = self.header
        if header.patient_key is None:
            raise MissingPatient(
                "Patient ID (0010,0020) is missing or empty; the radiograph is "
                "not joined to anyone: fix the sender to fill it"
            )
        checked_patient_key(header.patient_key, "Patient ID (0010,0020)")
        if header.acquired_at is None:
            raise InvalidInput(
                "no complete acquisition time: none of AcquisitionDateTime, "
                "AcquisitionDate+Time, ContentDate+Time or StudyDate+Time is set"
            )
        if header.modality not in ("CR", "DX"):
            raise InvalidInput(f"modality {header.modality} is not CR or DX")
        return Radiograph(
            radiograph_id=self.radiograph_id,
            patient_key=header.patient_key,
            study_instance_uid=header.study_instance_uid,
            series_instance_uid=header.series_instance_uid,
            sop_instance_uid=header.sop_instance_uid,
            acquired_at=header.acquired_at,
            modality=header.modality,
            view_position=header.view_position,
            body_part=header.body_part,
            patient_sex=header.patient_sex,
            patient_birth_date=header.patient_birth_date,
            pixel_spacing_mm=header.pixel_spacing_mm,
            transfer_syntax_uid=header.transfer_syntax_uid,
            photometric_interpretation=header.photometric_interpretation,
            image=Tensor.from_array(self.pixels),
        )

    @property
    def acquired_at(self) -> datetime | None:
        """When the image was acquired, timezone-aware."""
        return self.header.acquired_at


def read_radiograph(
    raw: bytes,
    image: ImageSpec,
    facility_tz: tzinfo,
    policy: ScoringPolicy | None = CHEST_RADIOGRAPHS,
) -> DecodedRadiograph:
    """Parse, check, decode and resize one DICOM object.

    ``policy=None`` decodes any grayscale image (tests, benchmarks).

    Raises
    ------
    NotScored
        If the policy does not score this object (not an error).
    UnsupportedInput
        If the transfer syntax or the photometric interpretation is refused.
    InvalidInput
        If the bytes are not DICOM, the pixel data is truncated or damaged, or
        a required attribute is missing or malformed.
    MissingPatient
        If the Patient ID cannot be decoded (a missing one is left to
        :meth:`DecodedRadiograph.to_event`).
    ContractMismatch
        If ``image`` asks for something this reader does not produce.
    """
    _check_spec(image)
    dataset = parse_dataset(raw)
    if policy is not None:
        policy.check(dataset)
    header = read_header(dataset, facility_tz)
    pipeline = GrayscalePipeline.from_dataset(dataset)
    rows, columns = int(dataset.Rows), int(dataset.Columns)
    check_dimensions(rows, columns)
    box = Letterbox.fit(rows, columns, image, header.pixel_aspect)
    stored = decode_stored_values(dataset, box.fitted_height, box.fitted_width)
    value_range = (
        pipeline.value_range(stored.values) if pipeline.needs_value_range else None
    )
    canvas = resample(
        stored.values,
        lambda strip: pipeline.apply(strip, value_range),
        box,
        stored.extent,
    )
    low, high = image.range
    if (low, high) != (0.0, 1.0):
        canvas = canvas * np.float32(high - low) + np.float32(low)
    return DecodedRadiograph(header, canvas[np.newaxis], stored.reduction)


def _check_spec(image: ImageSpec) -> None:
    if image.channels != 1 or image.polarity.upper() != "MONOCHROME2":
        raise ContractMismatch(
            f"the manifest asks for {image.channels} channel(s) in "
            f"{image.polarity}; imaging produces 1 channel in MONOCHROME2"
        )
