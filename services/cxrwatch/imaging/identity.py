"""Who the radiograph belongs to: Patient ID and Patient's Name, decoded strictly.

Text in a DICOM object is encoded in the repertoire its Specific Character Set
(0008,0005) names; without that attribute only ASCII is allowed. pydicom, left
to itself, decodes anything it cannot with a default or with replacement
characters and a warning. For identity that is a guess, so here:

* ASCII bytes decode as ASCII whatever the character set says;
* other bytes decode only with the declared character set, strictly; when the
  attribute is missing, empty, unknown, or the bytes are invalid in it, the name
  is withheld (``None``) with the reason, and a Patient ID is treated as missing;
* a single-byte character set whose decoding yields C1 control characters is
  taken to be the wrong one (UTF-8 bytes declared as ISO_IR 100 look like that).
  Other wrong declarations, such as GB18030 bytes declared as ISO_IR 100, decode
  to plausible Latin-1 text and cannot be told from a real name.

The name never leaves this process: it is not logged and not in the event.
"""

import re
from dataclasses import dataclass

from pydicom.charset import decode_bytes, python_encoding
from pydicom.dataset import Dataset

from cxrwatch.core.errors import MissingPatient
from cxrwatch.imaging.dataset import READ_ERRORS

_ESC = 0x1B
_PERSON_NAME_DELIMITERS = {0x5E, 0x3D}
_C1_CONTROLS = re.compile("[\x80-\x9f]")
_SINGLE_BYTE = {"latin_1", "iso8859", "iso8859_2", "iso8859_3", "iso8859_4"}


@dataclass(frozen=True)
class DecodedText:
    """A text value and, when it could not be decoded, why."""

    text: str | None
    problem: str | None = None


def patient_key(dataset: Dataset) -> str | None:
    """Patient ID (0010,0020), stripped; None when absent or empty.

    Raises
    ------
    MissingPatient
        If the ID holds bytes the declared character set cannot decode: an ID
        that might be misread must not join two patients.
    """
    found = decode_attribute(dataset, 0x00100020)
    if found.problem is not None:
        raise MissingPatient(
            f"Patient ID cannot be decoded ({found.problem}); the radiograph is not "
            "joined to anyone: fix the Specific Character Set at the sender"
        )
    return found.text.strip() if found.text and found.text.strip() else None


def patient_name(dataset: Dataset) -> DecodedText:
    """Patient's Name (0010,0010) in DICOM form (``Family^Given``), decoded strictly."""
    return decode_attribute(dataset, 0x00100010, _PERSON_NAME_DELIMITERS)


def decode_attribute(
    dataset: Dataset, tag: int, delimiters: set[int] | None = None
) -> DecodedText:
    """Decode a text attribute's raw bytes by the object's character set."""
    raw = _raw_bytes(dataset, tag)
    if raw is None:
        return DecodedText(None)
    raw = raw.rstrip(b" \x00")
    if raw.isascii() and _ESC not in raw:
        return DecodedText(raw.decode("ascii"))
    terms = character_set(dataset)
    if not terms:
        return DecodedText(
            None,
            "non-ASCII bytes but no Specific Character Set; the text is not guessed",
        )
    return _decode(raw, terms, delimiters or set())


def character_set(dataset: Dataset) -> list[str]:
    """The terms of Specific Character Set; empty when absent or blank.

    A blank first term keeps its place: it stands for the default repertoire.
    """
    try:
        element = dataset.get_item(0x00080005)
    except READ_ERRORS:
        return []
    value = None if element is None else element.value
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace").split("\\")
    elif isinstance(value, str):
        value = value.split("\\")
    terms = [str(term).strip() for term in value or []]
    return terms if any(terms) else []


def _decode(raw: bytes, terms: list[str], delimiters: set[int]) -> DecodedText:
    unknown = [term for term in terms if term not in python_encoding]
    if unknown:
        return DecodedText(None, f"unknown Specific Character Set {unknown}")
    encodings = [python_encoding[term] for term in terms]
    if _ESC not in raw:
        if not terms[0]:
            return DecodedText(
                None, f"non-ASCII bytes without an escape sequence under {terms}"
            )
        try:
            decoded = raw.decode(encodings[0], "strict")
        except (UnicodeDecodeError, LookupError) as exc:
            return DecodedText(None, f"bytes are not valid {terms[0]}: {exc}")
    else:
        decoded = decode_bytes(raw, encodings, delimiters)
        if "\ufffd" in decoded:
            return DecodedText(None, f"bytes are not valid in {terms}")
    if encodings[0] in _SINGLE_BYTE and _C1_CONTROLS.search(decoded):
        return DecodedText(
            None,
            f"decoding as {terms[0]} yields control characters; "
            "the declared character set is likely wrong",
        )
    return DecodedText(decoded)


def _raw_bytes(dataset: Dataset, tag: int) -> bytes | None:
    """The undecoded value of an element, before pydicom converts it."""
    try:
        element = dataset.get_item(tag)
    except READ_ERRORS:
        return None
    if element is None:
        return None
    value = element.value
    if isinstance(value, bytes):
        return value
    original = getattr(value, "original_string", None)
    if isinstance(original, bytes):
        return original
    if value is None:
        return None
    return str(value).encode("utf-8")
