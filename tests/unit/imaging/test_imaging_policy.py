"""Which objects are scored: the policy on real samples and altered ones."""

from datetime import tzinfo

import pytest
from cxrwatch.core.errors import UnsupportedInput
from cxrwatch.core.manifest import ImageSpec
from cxrwatch.imaging.decode import read_radiograph
from cxrwatch.imaging.policy import CHEST_RADIOGRAPHS, NotScored
from pydicom.encaps import encapsulate

from tests.unit.imaging.samples import FODICOM_CHEST, dataset, sample, to_bytes


@pytest.mark.parametrize(
    ("name", "reason", "detail"),
    [
        ("dtf_WG04__RG2_JPLL.dcm", "not-chest", "body part HIP"),
        ("dtf_WG04__RG3_RLE.dcm", "not-chest", "body part EXTREMITY"),
        ("RG3_J2KR.dcm", "not-chest", "body part EXTREMITY"),
        ("highdicom__dx_image.dcm", "not-human", "CANINE"),
        ("dicomdirtests/77654033/CR1/6154", "not-chest", "body part CSPINE"),
        ("MR_small.dcm", "not-radiograph", "modality MR"),
    ],
)
def test_objects_that_are_not_scored(
    name: str, reason: str, detail: str, utc: tzinfo, spec: ImageSpec
) -> None:
    with pytest.raises(NotScored) as skipped:
        read_radiograph(sample(name), spec, utc)

    assert skipped.value.reason == reason
    assert detail in skipped.value.detail


@pytest.mark.parametrize(
    "name", ["RG1_J2KR.dcm", "dtf_WG04__RG1_JLSN.dcm", FODICOM_CHEST]
)
def test_frontal_chests_are_scored(name: str) -> None:
    CHEST_RADIOGRAPHS.check(dataset(name))


def test_a_chest_without_body_part_is_scored_by_its_description() -> None:
    """RG1 has Body Part CHEST; without it, Study Description THORAX decides."""
    ds = dataset("RG1_UNCR.dcm")
    del ds.BodyPartExamined
    assert ds.StudyDescription == "THORAX"

    CHEST_RADIOGRAPHS.check(ds)


def test_no_body_part_and_no_chest_words_is_not_chest() -> None:
    ds = dataset("RG1_UNCR.dcm")
    del ds.BodyPartExamined
    ds.StudyDescription = "LEFT HAND"

    with pytest.raises(NotScored, match="not-chest"):
        CHEST_RADIOGRAPHS.check(ds)


@pytest.mark.parametrize("view", ["LL", "RL", "LLD", "OBL"])
def test_side_views_are_not_frontal(view: str) -> None:
    ds = dataset("RG1_UNCR.dcm")
    ds.ViewPosition = view

    with pytest.raises(NotScored, match="not-frontal"):
        CHEST_RADIOGRAPHS.check(ds)


def test_a_lateral_series_without_view_position_is_not_frontal() -> None:
    ds = dataset("RG1_UNCR.dcm")
    del ds.ViewPosition
    ds.SeriesDescription = "CHEST LAT"

    with pytest.raises(NotScored, match="not-frontal"):
        CHEST_RADIOGRAPHS.check(ds)


def test_a_two_view_study_still_scores_its_pa_image() -> None:
    ds = dataset("RG1_UNCR.dcm")
    del ds.ViewPosition
    ds.StudyDescription = "CHEST PA AND LAT"

    CHEST_RADIOGRAPHS.check(ds)


def test_species_tag_other_than_human_is_not_human() -> None:
    ds = dataset("RG1_UNCR.dcm")
    ds.PatientSpeciesDescription = "Canis lupus familiaris"

    with pytest.raises(NotScored, match="not-human"):
        CHEST_RADIOGRAPHS.check(ds)


def test_the_dog_is_refused_even_when_its_texts_are_neutral() -> None:
    """Without 'CANINE' the dog's thorax would pass: a breed tag is enough."""
    ds = dataset("highdicom__dx_image.dcm")
    ds.AcquisitionDeviceProcessingDescription = "THORAX"
    ds.PerformedProtocolCodeSequence[0].CodeMeaning = "THORAX"
    ds.PatientBreedDescription = "Beagle"

    with pytest.raises(NotScored, match="not-human"):
        CHEST_RADIOGRAPHS.check(ds)


def test_multi_frame_objects_are_skipped() -> None:
    ds = dataset(FODICOM_CHEST)
    ds.NumberOfFrames = 2

    with pytest.raises(NotScored, match="multi-frame: 2 frames"):
        CHEST_RADIOGRAPHS.check(ds)


def test_dx_for_processing_is_skipped() -> None:
    ds = dataset("highdicom__dx_image.dcm")
    ds.PresentationIntentType = "FOR PROCESSING"

    with pytest.raises(NotScored, match="for-processing"):
        CHEST_RADIOGRAPHS.check(ds)


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL", "PALETTE COLOR"])
def test_colour_chests_are_refused_by_name(photometric: str) -> None:
    ds = dataset(FODICOM_CHEST)
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 3

    with pytest.raises(
        UnsupportedInput, match=f"photometric interpretation {photometric}"
    ):
        CHEST_RADIOGRAPHS.check(ds)


def test_the_policy_runs_before_any_pixel_is_decoded(
    utc: tzinfo, spec: ImageSpec
) -> None:
    """A hip whose pixel data is garbage is still only skipped."""
    ds = dataset("dtf_WG04__RG2_JPLL.dcm")
    ds.PixelData = encapsulate([b"\x00" * 16])

    with pytest.raises(NotScored, match="not-chest"):
        read_radiograph(to_bytes(ds), spec, utc)


def test_not_scored_survives_pickling() -> None:
    """Workers send it back across a process boundary."""
    import pickle

    skip = pickle.loads(pickle.dumps(NotScored("not-chest", "body part HIP")))

    assert (skip.reason, skip.detail, str(skip)) == (
        "not-chest",
        "body part HIP",
        "not-chest: body part HIP",
    )
