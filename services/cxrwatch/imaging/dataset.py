"""Bytes to a pydicom data set, and typed access to its attributes.

A DICOM object arrives in one of three shapes:

* a Part 10 file: 128-byte preamble, ``DICM``, file meta (group 0002), data set;
* the file meta and data set without the preamble;
* a bare data set (ACR-NEMA style, or a file cut out of a Part 10 file), whose
  transfer syntax must be inferred; pydicom infers implicit or explicit VR and
  the byte order from the first element.

A bare data set must begin with an element of group 0002 or 0008 (every image
does); up to three stray bytes before it are skipped, which is what a file cut
from a Part 10 file one byte early looks like (pydicom's ``no_meta.dcm`` keeps
the last padding byte of its meta group). Anything else is refused as not
DICOM rather than parsed into nonsense.

Every error from pydicom while reading or converting a value is translated
here into :class:`~cxrwatch.core.errors.InvalidInput` naming the attribute.
"""

import io
import logging
import struct
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from cxrwatch.core.errors import InvalidInput

logger = logging.getLogger(__name__)

# What pydicom raises on malformed input, as seen on truncated and random bytes.
READ_ERRORS = (
    InvalidDicomError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    EOFError,
    OverflowError,
    NotImplementedError,
    struct.error,
    zlib.error,
)

_PIXEL_DATA = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF
_MAX_STRAY_BYTES = 3
_DATASET_GROUPS = (0x0002, 0x0008)
_ITEM = b"\xfe\xff\x00\xe0"
_SEQUENCE_END = b"\xfe\xff\xdd\xe0"

T = TypeVar("T")


def parse_dataset(raw: bytes) -> Dataset:
    """Parse one DICOM object, inferring the transfer syntax when it is not stated.

    Raises
    ------
    InvalidInput
        If the bytes are not a DICOM object, or its encapsulated pixel data is
        cut short (the message then says the pixel data is truncated).
    """
    if len(raw) < 8:
        raise InvalidInput(f"not a DICOM object: only {len(raw)} bytes")
    start = _dataset_start(raw)
    try:
        dataset = dcmread(io.BytesIO(raw[start:] if start else raw), force=True)
    except READ_ERRORS as exc:
        raise InvalidInput(f"not a readable DICOM object: {exc}") from exc
    if _PIXEL_DATA not in dataset:
        _refuse_cut_encapsulation(raw)
    if len(dataset) == 0:
        raise InvalidInput("not a DICOM object: no data element could be read")
    _refuse_cut_last_element(dataset)
    _state_transfer_syntax(dataset)
    return dataset


def _dataset_start(raw: bytes) -> int:
    if raw[128:132] == b"DICM":
        return 0
    if raw[:4] == b"DICM":
        raise InvalidInput(
            "the object starts with 'DICM' but has no 128-byte preamble before it; "
            "resend it as a Part 10 file"
        )
    for offset in range(_MAX_STRAY_BYTES + 1):
        little = struct.unpack_from("<H", raw, offset)[0]
        big = struct.unpack_from(">H", raw, offset)[0]
        if little in _DATASET_GROUPS or big in _DATASET_GROUPS:
            if offset:
                logger.info("skipped %d stray bytes before the data set", offset)
            return offset
    raise InvalidInput(
        "not a DICOM object: no preamble with 'DICM', and the first bytes "
        f"{raw[:8].hex(' ')} are not an element of group 0002 or 0008"
    )


def _state_transfer_syntax(dataset: Dataset) -> None:
    """Record the syntax pydicom inferred, so that decoders know it."""
    meta = dataset.file_meta
    if meta.get("TransferSyntaxUID"):
        return
    implicit, little = dataset.original_encoding
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    elif little:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRBigEndian


def _refuse_cut_encapsulation(raw: bytes) -> None:
    """Raise if the bytes hold encapsulated pixel data pydicom had to drop.

    pydicom drops a Pixel Data element whose fragments run past the end of the
    object, with only a warning; the header alone would then look like an
    object without pixels.
    """
    found = _encapsulation_offset(raw)
    if found is None:
        return
    position, fragments = found, 0
    while position + 8 <= len(raw):
        tag = raw[position : position + 4]
        length = struct.unpack_from("<I", raw, position + 4)[0]
        if tag == _SEQUENCE_END:
            return
        if tag != _ITEM:
            break
        if position + 8 + length > len(raw):
            available = len(raw) - position - 8
            raise InvalidInput(
                f"pixel data is truncated: fragment {fragments} declares {length} "
                f"bytes but only {available} remain; the object was cut short, "
                "resend the complete file"
            )
        position += 8 + length
        fragments += 1
    raise InvalidInput(
        f"pixel data is truncated: the encapsulated Pixel Data ends after "
        f"{fragments} item(s) without its sequence delimiter; the object was cut "
        "short, resend the complete file"
    )


def _refuse_cut_last_element(dataset: Dataset) -> None:
    """Raise if the last element holds fewer bytes than its header declares.

    pydicom keeps such a short value without a word; only the last element
    of a cut object can be short.
    """
    last = dataset.get_item(max(dataset.keys()))
    declared = getattr(last, "length", None)
    value = getattr(last, "value", None)
    if not isinstance(value, bytes) or declared in (None, _UNDEFINED_LENGTH):
        return
    if len(value) >= declared:
        return
    what = "pixel data" if last.tag == _PIXEL_DATA else f"element {last.tag}"
    raise InvalidInput(
        f"{what} is truncated: {len(value)} bytes present of the {declared} "
        "declared; the object was cut short, resend the complete file"
    )


def _encapsulation_offset(raw: bytes) -> int | None:
    """Offset of the first item after an undefined-length Pixel Data header."""
    headers = (
        b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff",
        b"\xe0\x7f\x10\x00OW\x00\x00\xff\xff\xff\xff",
        b"\xe0\x7f\x10\x00\xff\xff\xff\xff",
    )
    for header in headers:
        at = raw.rfind(header)
        if at >= 0:
            return at + len(header)
    return None


def transfer_syntax(dataset: Dataset) -> UID:
    """The transfer syntax the data set was read with."""
    return UID(str(dataset.file_meta.TransferSyntaxUID))


def attribute(dataset: Dataset, keyword: str, convert: Callable[[Any], T]) -> T | None:
    """Return the first value of ``keyword`` converted, or None when empty or absent.

    Raises
    ------
    InvalidInput
        If the value cannot be read or converted.
    """
    try:
        value = dataset.get(keyword)
        if isinstance(value, list | tuple | MultiValue):
            value = value[0] if len(value) else None
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return convert(value)
    except READ_ERRORS as exc:
        shown = _shown(dataset, keyword)
        raise InvalidInput(
            f"{keyword} holds {shown}, which cannot be read: {exc}"
        ) from exc


def values(dataset: Dataset, keyword: str, convert: Callable[[Any], T]) -> list[T]:
    """Return every value of ``keyword`` converted (empty when absent).

    Raises
    ------
    InvalidInput
        If a value cannot be read or converted.
    """
    try:
        value = dataset.get(keyword)
        if value is None or value == "":
            return []
        if isinstance(value, str) or not hasattr(value, "__len__"):
            return [convert(value)]
        return [convert(item) for item in value]
    except READ_ERRORS as exc:
        shown = _shown(dataset, keyword)
        raise InvalidInput(
            f"{keyword} holds {shown}, which cannot be read: {exc}"
        ) from exc


def text(dataset: Dataset, keyword: str) -> str | None:
    """The first value of a text attribute, stripped; None when empty or absent."""
    found = attribute(dataset, keyword, lambda value: str(value).strip())
    return found or None


def number(dataset: Dataset, keyword: str) -> float | None:
    """The first value of a numeric attribute."""
    return attribute(dataset, keyword, float)


def integer(dataset: Dataset, keyword: str) -> int | None:
    """The first value of an integer attribute."""
    return attribute(dataset, keyword, int)


def required_integer(dataset: Dataset, keyword: str) -> int:
    """An integer attribute the pixel data cannot be read without.

    Raises
    ------
    InvalidInput
        If it is absent or unreadable.
    """
    found = integer(dataset, keyword)
    if found is None:
        raise InvalidInput(f"{keyword} is missing; the pixel data cannot be read")
    return found


def _shown(dataset: Dataset, keyword: str) -> str:
    try:
        element = dataset.get_item(keyword)
    except READ_ERRORS:
        return "an unreadable element"
    raw_value = getattr(element, "value", None)
    if isinstance(raw_value, bytes):
        return repr(raw_value[:40])
    return repr(raw_value)[:60]
