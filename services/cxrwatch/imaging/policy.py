"""Which DICOM objects are chest radiographs the model scores.

The model reads frontal chest radiographs of adult humans. The checks, in
order; the first that fails decides:

1. **modality** CR or DX, else skipped ``not-radiograph``;
2. **for presentation**: a DX "FOR PROCESSING" object (raw detector data, not
   meant to be looked at) is skipped ``for-processing``;
3. **human**: skipped ``not-human`` when Patient Species (description or code)
   names anything but *Homo sapiens*, a breed is given, or a procedure text
   names an animal or a veterinary setting (CANINE, FELINE, VETERINARY...).
   Veterinary objects rarely carry the species tag (highdicom's ``dx_image``
   says only "CANINE LATERAL THORAX");
4. **single frame**: an object with several frames is skipped ``multi-frame``:
   in a CR/DX that means dual-energy pairs, tomosynthesis or a stitched series,
   and which frame the model should see is not knowable from the header;
5. **chest**: Body Part Examined CHEST, THORAX or LUNG; when the tag is absent
   or empty, a procedure text (study, series, protocol, acquisition processing
   and code meanings) must name the chest (CHEST, THORAX, CXR, LUNG...); a body
   part that is present and names something else is ``not-chest`` whatever the
   descriptions say;
6. **frontal view**: View Position PA or AP, or absent with no lateral,
   oblique or decubitus wording in the view code or the image's own texts
   (series, protocol, acquisition processing; not the study's, since a study
   "CHEST PA AND LAT" holds the PA image too); otherwise ``not-frontal``;
7. **grayscale**: MONOCHROME1 or MONOCHROME2 with one sample per pixel. A
   colour object (RGB, YBR_*, PALETTE COLOR) is a secondary capture, a
   screenshot with burnt-in overlays at best; it is refused as
   :class:`UnsupportedInput` (dead-lettered, with the interpretation named), not
   converted, because a converted screenshot would be scored as if it were a
   radiograph.

Skips raise :class:`NotScored`, which is no error: the service counts it in
``cxrwatch_skipped_total{reason}`` and commits the record.
"""

import re
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from cxrwatch.core.errors import InvalidInput, UnsupportedInput
from cxrwatch.imaging.dataset import READ_ERRORS, integer, text

_DX_FOR_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.1.1"
_DESCRIPTIONS = (
    "StudyDescription",
    "SeriesDescription",
    "ProtocolName",
    "AcquisitionDeviceProcessingDescription",
    "PerformedProcedureStepDescription",
    "RequestedProcedureDescription",
)
# Texts about this image rather than the whole study (a study "CHEST PA AND LAT"
# holds a PA image too).
_IMAGE_DESCRIPTIONS = (
    "SeriesDescription",
    "ProtocolName",
    "AcquisitionDeviceProcessingDescription",
)
_CODED = (
    "AnatomicRegionSequence",
    "ProcedureCodeSequence",
    "PerformedProtocolCodeSequence",
    "RequestedProcedureCodeSequence",
)


class NotScored(Exception):
    """An object the policy does not score; counted and committed, never an error."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def _words(*terms: str) -> re.Pattern[str]:
    return re.compile(r"\b(" + "|".join(terms) + r")\b")


@dataclass(frozen=True)
class ScoringPolicy:
    """What counts as a radiograph to score; see the module docstring."""

    modalities: frozenset[str] = frozenset({"CR", "DX"})
    chest_body_parts: frozenset[str] = frozenset({"CHEST", "THORAX", "LUNG"})
    frontal_views: frozenset[str] = frozenset({"PA", "AP"})
    human_species: frozenset[str] = frozenset({"HOMO SAPIENS", "HUMAN"})
    chest_words: re.Pattern[str] = field(
        default=_words("CHEST", "THORAX", "THORACIC", "CXR", "LUNGS?", "THORAKS")
    )
    side_view_words: re.Pattern[str] = field(
        default=_words("LAT", "LATERAL", "LATERALE", "OBL", "OBLIQUE", "DECUBITUS")
    )
    animal_words: re.Pattern[str] = field(
        default=_words(
            "CANINE",
            "FELINE",
            "EQUINE",
            "BOVINE",
            "PORCINE",
            "OVINE",
            "DOG",
            "CAT",
            "HORSE",
            "VET",
            "VETERINARY",
            "VETERINARIAN",
        )
    )

    def check(self, dataset: Dataset) -> None:
        """Return when the object is to be scored.

        Raises
        ------
        NotScored
            With the reason, when the object is not a radiograph to score.
        UnsupportedInput
            When it is a chest radiograph in a form the model cannot take.
        """
        modality = (text(dataset, "Modality") or "").upper()
        if modality not in self.modalities:
            raise NotScored("not-radiograph", f"modality {modality or 'absent'}")
        self._check_presentation(dataset)
        descriptions = _procedure_texts(dataset)
        self._check_species(dataset, descriptions)
        frames = integer(dataset, "NumberOfFrames") or 1
        if frames > 1:
            raise NotScored("multi-frame", f"{frames} frames")
        self._check_body_part(dataset, descriptions)
        self._check_view(dataset)
        self._check_grayscale(dataset)

    def _check_presentation(self, dataset: Dataset) -> None:
        intent = (text(dataset, "PresentationIntentType") or "").upper()
        sop_class = text(dataset, "SOPClassUID") or ""
        if intent == "FOR PROCESSING" or sop_class == _DX_FOR_PROCESSING:
            raise NotScored("for-processing", "DX for processing, not presentation")

    def _check_species(self, dataset: Dataset, descriptions: str) -> None:
        species = (text(dataset, "PatientSpeciesDescription") or "").upper()
        species = species or _code_meaning(dataset, "PatientSpeciesCodeSequence")
        if species and species not in self.human_species:
            raise NotScored("not-human", f"species {species}")
        breed = text(dataset, "PatientBreedDescription") or _code_meaning(
            dataset, "PatientBreedCodeSequence"
        )
        if breed:
            raise NotScored("not-human", "a breed is given")
        found = self.animal_words.search(descriptions)
        if found:
            raise NotScored("not-human", f"procedure text says {found.group(0)}")

    def _check_body_part(self, dataset: Dataset, descriptions: str) -> None:
        body_part = (text(dataset, "BodyPartExamined") or "").upper()
        if body_part:
            if body_part not in self.chest_body_parts:
                raise NotScored("not-chest", f"body part {body_part}")
            return
        if not self.chest_words.search(descriptions):
            raise NotScored(
                "not-chest", "no Body Part Examined and no description names the chest"
            )

    def _check_view(self, dataset: Dataset) -> None:
        view = (text(dataset, "ViewPosition") or "").upper()
        if view:
            if view not in self.frontal_views:
                raise NotScored("not-frontal", f"view position {view}")
            return
        described = [text(dataset, keyword) or "" for keyword in _IMAGE_DESCRIPTIONS]
        described += [
            _code_meaning(dataset, "ViewCodeSequence"),
            _code_meaning(dataset, "PerformedProtocolCodeSequence"),
        ]
        found = self.side_view_words.search(" ".join(described).upper())
        if found:
            raise NotScored("not-frontal", f"view described as {found.group(0)}")

    def _check_grayscale(self, dataset: Dataset) -> None:
        photometric = (text(dataset, "PhotometricInterpretation") or "").upper()
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise UnsupportedInput(
                f"photometric interpretation {photometric or 'absent'} is refused: "
                "the model takes grayscale radiographs and a colour object is a "
                "secondary capture; send the original MONOCHROME1/2 image"
            )
        samples = integer(dataset, "SamplesPerPixel") or 1
        if samples != 1:
            raise InvalidInput(
                f"{photometric} with Samples per Pixel {samples}; grayscale has 1"
            )


def _procedure_texts(dataset: Dataset) -> str:
    parts = [text(dataset, keyword) or "" for keyword in _DESCRIPTIONS]
    parts += [_code_meaning(dataset, keyword) for keyword in _CODED]
    return " ".join(parts).upper()


def _code_meaning(dataset: Dataset, keyword: str) -> str:
    """Code meanings of every item of a code sequence, joined, upper case."""
    try:
        items = dataset.get(keyword) or []
        meanings = [str(item.get("CodeMeaning", "")) for item in items]
    except READ_ERRORS:
        return ""
    return " ".join(meanings).upper().strip()


CHEST_RADIOGRAPHS = ScoringPolicy()
