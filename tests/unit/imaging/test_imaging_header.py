"""Header values of the event: identity, character sets, times, spacing."""

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from cxrwatch.core.errors import InvalidInput, MissingPatient
from cxrwatch.core.events import Radiograph
from cxrwatch.core.ids import deterministic_id
from cxrwatch.core.manifest import ImageSpec
from cxrwatch.imaging.decode import read_radiograph
from cxrwatch.imaging.header import pixel_spacing
from cxrwatch.imaging.timestamps import acquired_at
from pydicom.dataset import Dataset

from tests.unit.imaging.samples import FODICOM_CHEST, dataset, sample, to_bytes

PARIS = ZoneInfo("Europe/Paris")
NAME = "王^小东"


def _chest_named(charset: str, name_bytes_from: str | None = None) -> bytes:
    """fodicom's chest (a bare data set) with a Patient ID and a non-ASCII name."""
    ds = dataset(FODICOM_CHEST)
    ds.PatientID = "CN-0001"
    ds.SpecificCharacterSet = name_bytes_from or charset
    ds.PatientName = NAME
    raw = to_bytes(ds, as_file=False)
    if name_bytes_from is None:
        return raw
    old = name_bytes_from.encode().ljust(
        len(name_bytes_from) + len(name_bytes_from) % 2
    )
    new = charset.encode().ljust(len(old))
    assert len(new) == len(old) and raw.count(old) == 1
    return raw.replace(old, new)


def test_gb18030_name_decodes_with_its_character_set(
    utc: tzinfo, spec: ImageSpec
) -> None:
    raw = _chest_named("GB18030")
    assert "王^小东".encode("gb18030") == b"\xcd\xf5^\xd0\xa1\xb6\xab"
    assert b"\xcd\xf5^\xd0\xa1\xb6\xab" in raw

    decoded = read_radiograph(raw, spec, utc)

    assert decoded.patient_name == NAME
    assert decoded.header.patient_name_problem is None


def test_gb18030_name_with_the_character_set_blanked_is_not_guessed(
    utc: tzinfo, spec: ImageSpec
) -> None:
    raw = _chest_named("       ", name_bytes_from="GB18030")

    decoded = read_radiograph(raw, spec, utc)

    assert decoded.patient_name is None
    assert "no Specific Character Set" in (decoded.header.patient_name_problem or "")
    assert decoded.header.patient_key == "CN-0001"


def test_utf8_declared_as_latin1_is_refused(utc: tzinfo, spec: ImageSpec) -> None:
    raw = _chest_named("ISO_IR 100", name_bytes_from="ISO_IR 192")

    decoded = read_radiograph(raw, spec, utc)

    assert decoded.patient_name is None
    assert "likely wrong" in (decoded.header.patient_name_problem or "")


def test_latin1_declared_as_utf8_is_refused(utc: tzinfo, spec: ImageSpec) -> None:
    ds = dataset(FODICOM_CHEST)
    ds.PatientID = "FR-1"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = "Buc^Jérôme"
    raw = to_bytes(ds, as_file=False).replace(b"ISO_IR 100", b"ISO_IR 192")

    decoded = read_radiograph(raw, spec, utc)

    assert decoded.patient_name is None
    assert "not valid ISO_IR 192" in (decoded.header.patient_name_problem or "")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # PS3.5 Annex H: ISO 2022 IR 87 with escape sequences
        ("charset_files/chrH31.dcm", "Yamada^Tarou=山田^太郎=やまだ^たろう"),
        # EUC-KR b1e8 c8f1 c1df, after ESC $ ) C
        ("charset_files/chrKoreanMulti.dcm", "김희중"),
    ],
)
def test_iso_2022_names_decode(name: str, expected: str) -> None:
    from cxrwatch.imaging.identity import patient_name

    assert patient_name(dataset(name)).text == expected


def test_non_ascii_patient_id_without_character_set_is_missing_patient(
    utc: tzinfo, spec: ImageSpec
) -> None:
    ds = dataset(FODICOM_CHEST)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientID = "Jérôme-1"
    raw = to_bytes(ds, as_file=False).replace(b"ISO_IR 100", b"          ")

    with pytest.raises(MissingPatient, match="Patient ID cannot be decoded"):
        read_radiograph(raw, spec, utc)


def test_missing_patient_id_is_never_joined(utc: tzinfo, spec: ImageSpec) -> None:
    decoded = read_radiograph(sample(FODICOM_CHEST), spec, utc)

    assert decoded.header.patient_key is None
    with pytest.raises(MissingPatient):
        decoded.to_event()


def test_blank_patient_id_is_never_joined(utc: tzinfo, spec: ImageSpec) -> None:
    ds = dataset(FODICOM_CHEST)
    ds.PatientID = "   "

    with pytest.raises(MissingPatient):
        read_radiograph(to_bytes(ds, as_file=False), spec, utc).to_event()


def test_rg1_event(utc: tzinfo, spec: ImageSpec) -> None:
    """RG1: ContentDate 19950926, ContentTime 125130, Timezone Offset -0400."""
    decoded = read_radiograph(sample("RG1_J2KR.dcm"), spec, utc)

    event = Radiograph.model_validate_json(decoded.to_event().model_dump_json())

    sop = str(dataset("RG1_J2KR.dcm").SOPInstanceUID)
    assert event.sop_instance_uid == sop
    assert event.radiograph_id == deterministic_id("radiograph", sop)
    assert event.patient_key == "9RG1"
    assert event.acquired_at == datetime(
        1995, 9, 26, 12, 51, 30, tzinfo=timezone(-timedelta(hours=4))
    )
    assert (event.modality, event.view_position, event.body_part) == (
        "CR",
        "PA",
        "CHEST",
    )
    assert (event.patient_sex, event.patient_birth_date) == ("F", "1940-03-05")
    assert event.pixel_spacing_mm is None  # stored as 0.000\0.000
    assert event.transfer_syntax_uid == "1.2.840.10008.1.2.4.90"
    assert event.photometric_interpretation == "MONOCHROME1"
    image = event.image.to_array()
    assert image.shape == (1, 224, 224) and image.dtype == np.float32


def test_acr_nema_dates_read_in_the_facility_zone(spec: ImageSpec) -> None:
    """fodicom: Acquisition Date '1993.02.24', Time '17:58:00', no offset tag."""
    decoded = read_radiograph(sample(FODICOM_CHEST), spec, PARIS)

    assert decoded.acquired_at == datetime(1993, 2, 24, 17, 58, tzinfo=PARIS)
    assert decoded.acquired_at.utcoffset() == timedelta(hours=1)
    assert decoded.header.acquired_at_source == "AcquisitionDate+AcquisitionTime"


def _times(**attributes: str) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def test_acquisition_datetime_with_its_own_offset_wins() -> None:
    ds = _times(
        AcquisitionDateTime="20200125105000.5+0530",
        ContentDate="20200101",
        ContentTime="000000",
        TimezoneOffsetFromUTC="-0400",
    )

    found = acquired_at(ds, PARIS)

    offset = timezone(timedelta(hours=5, minutes=30))
    assert found == (
        datetime(2020, 1, 25, 10, 50, 0, 500000, tzinfo=offset),
        "AcquisitionDateTime",
    )


def test_object_offset_applies_when_the_value_has_none() -> None:
    ds = _times(AcquisitionDateTime="202001251050", TimezoneOffsetFromUTC="-0400")

    when, _ = acquired_at(ds, PARIS) or (None, None)

    assert when == datetime(2020, 1, 25, 10, 50, tzinfo=timezone(-timedelta(hours=4)))


def test_a_date_without_its_time_falls_to_the_next_source() -> None:
    ds = _times(
        AcquisitionDate="20200125",
        ContentDate="20200125",
        ContentTime="0930",
        StudyDate="20200124",
        StudyTime="230000",
    )

    assert acquired_at(ds, UTC) == (
        datetime(2020, 1, 25, 9, 30, tzinfo=UTC),
        "ContentDate+ContentTime",
    )


def test_study_date_and_time_are_the_last_source() -> None:
    ds = _times(StudyDate="20200124", StudyTime="23")

    assert acquired_at(ds, UTC) == (
        datetime(2020, 1, 24, 23, tzinfo=UTC),
        "StudyDate+StudyTime",
    )


def test_malformed_dates_name_the_attribute() -> None:
    with pytest.raises(InvalidInput, match="ContentDate is '2020-13-45'"):
        acquired_at(_times(ContentDate="2020-13-45", ContentTime="1200"), UTC)


def test_no_time_at_all_is_refused_when_making_the_event(
    utc: tzinfo, spec: ImageSpec
) -> None:
    ds = dataset(FODICOM_CHEST)
    ds.PatientID = "NOTIME"
    del ds.AcquisitionDate

    decoded = read_radiograph(to_bytes(ds, as_file=False), spec, utc)

    with pytest.raises(InvalidInput, match="no complete acquisition time"):
        decoded.to_event()


def test_spacing_sources() -> None:
    both = _times()
    both.PixelSpacing = [0.2, 0.25]
    both.ImagerPixelSpacing = [0.1, 0.1]
    zero_pixel = _times()
    zero_pixel.PixelSpacing = [0.0, 0.0]
    zero_pixel.ImagerPixelSpacing = [0.143, 0.143]
    all_zero = _times()
    all_zero.PixelSpacing = [0.0, 0.0]

    assert pixel_spacing(both) == (0.2, 0.25)
    assert pixel_spacing(zero_pixel) == (0.143, 0.143)
    assert pixel_spacing(all_zero) is None
    assert pixel_spacing(_times()) is None
    assert pixel_spacing(dataset("dicomdirtests/77654033/CR1/6154")) == (0.1, 0.1)
    assert pixel_spacing(dataset("RG1_UNCR.dcm")) is None
