"""Pixel Data to an array of stored values, at reduced resolution where a codec can.

Transfer syntaxes read:

============================  ===============================  ====================
syntax                        UID                              decoded by
============================  ===============================  ====================
Implicit VR Little Endian     1.2.840.10008.1.2                a view of the bytes
Explicit VR Little Endian     1.2.840.10008.1.2.1              a view of the bytes
Explicit VR Big Endian        1.2.840.10008.1.2.2              a view of the bytes
Deflated Explicit VR LE       1.2.840.10008.1.2.1.99           pydicom inflates
RLE Lossless                  1.2.840.10008.1.2.5              pylibjpeg-rle
JPEG Baseline (8-bit)         1.2.840.10008.1.2.4.50           Pillow, DCT-scaled
JPEG Extended (12-bit)        1.2.840.10008.1.2.4.51           pylibjpeg-libjpeg
JPEG Lossless P14, SV1        1.2.840.10008.1.2.4.57, .70      pylibjpeg-libjpeg
JPEG-LS lossless, near        1.2.840.10008.1.2.4.80, .81      pyjpegls (CharLS)
JPEG 2000 lossless, lossy     1.2.840.10008.1.2.4.90, .91      glymur, reduced
HTJ2K (three syntaxes)        1.2.840.10008.1.2.4.201-203      pylibjpeg-openjpeg
============================  ===============================  ====================

Any other syntax is refused with :class:`UnsupportedInput` naming it. Only the
first frame is decoded (the policy decides what a multi-frame object means).

Reduced resolution: Pillow's ``draft`` mode scales baseline JPEG by 1/2, 1/4
or 1/8 in the DCT domain (the 1/8 image is the blocks' DC terms, i.e. their
means), and OpenJPEG stops JPEG 2000 at a coarser wavelet level (see
:mod:`cxrwatch.imaging.jpeg2000`). Other codecs decode at full size.
"""

import io
import logging
import math
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
)

from cxrwatch.core.errors import InvalidInput, UnsupportedInput
from cxrwatch.imaging import jpeg2000
from cxrwatch.imaging.dataset import (
    READ_ERRORS,
    integer,
    required_integer,
    transfer_syntax,
)

logger = logging.getLogger(__name__)

NATIVE = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
)
ENCAPSULATED = (
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
)
MAX_SIDE = 8192
"""Most pixels a side an object may have to be decoded."""
_DCT_SCALES = (8, 4, 2)
# CharLS decodes JPEG-LS about 3x faster than libjpeg; pydicom tries libjpeg
# first unless told.
_PREFERRED_PLUGINS = {
    "1.2.840.10008.1.2.4.80": "pyjpegls",
    "1.2.840.10008.1.2.4.81": "pyjpegls",
}
# What codecs raise on damaged data, besides pydicom's own errors.
_CODEC_ERRORS = (*READ_ERRORS, RuntimeError, OSError)


@dataclass(frozen=True)
class StoredPixels:
    """Stored values of the first frame, maybe already shrunk by the codec.

    ``reduction`` is the factor each side was divided by (1 when full size);
    ``rows`` and ``columns`` are those of the full image.
    """

    values: np.ndarray
    rows: int
    columns: int
    reduction: int

    @property
    def extent(self) -> tuple[float, float]:
        """The full image's size in the pixels of ``values``."""
        return self.rows / self.reduction, self.columns / self.reduction


def decode_stored_values(
    dataset: Dataset, min_rows: int, min_columns: int
) -> StoredPixels:
    """Decode the first frame, no smaller than ``min_rows`` x ``min_columns``.

    Raises
    ------
    UnsupportedInput
        If the transfer syntax or bit depth cannot be decoded here.
    InvalidInput
        If the pixel data is missing, truncated or damaged.
    """
    syntax = transfer_syntax(dataset)
    rows = required_integer(dataset, "Rows")
    columns = required_integer(dataset, "Columns")
    check_dimensions(rows, columns)
    if "PixelData" not in dataset:
        raise InvalidInput(
            "the object has no Pixel Data (7FE0,0010); send the image, not a header"
        )
    if syntax in NATIVE:
        values = _native(dataset, syntax, rows, columns)
        return StoredPixels(values, rows, columns, 1)
    if syntax not in ENCAPSULATED:
        raise UnsupportedInput(
            f"transfer syntax {syntax} ({syntax.name}) cannot be decoded here; "
            "resend the image uncompressed or as JPEG, JPEG-LS, JPEG 2000 or RLE"
        )
    frame = _first_frame(dataset, syntax)
    if syntax in (JPEG2000Lossless, JPEG2000):
        _check_codestream_size(frame, syntax, rows, columns)
    reduced = _reduced(dataset, syntax, frame, rows, columns, min_rows, min_columns)
    if reduced is not None:
        return reduced
    values = _full_decode(dataset, syntax)
    return StoredPixels(values, rows, columns, 1)


def check_dimensions(rows: int, columns: int) -> None:
    """Refuse, before any decoder sizes its buffers from them, dimensions no
    radiograph has: a 43 cm detector at 0.1 mm is about 4300 pixels a side, and
    a stitched long-length image stays under twice that. An RLE object whose
    header said 65535 x 65535 took a decoder 20 s and 8 GB to refuse.

    Raises
    ------
    InvalidInput
        If a side is not positive or is over :data:`MAX_SIDE`.
    """
    if rows <= 0 or columns <= 0:
        raise InvalidInput(f"the image is {rows} x {columns} pixels; both must be > 0")
    if max(rows, columns) > MAX_SIDE:
        raise InvalidInput(
            f"Rows {rows} x Columns {columns} is larger than a radiograph "
            f"(at most {MAX_SIDE} pixels a side); not decoded"
        )


def _check_codestream_size(frame: bytes, syntax: UID, rows: int, columns: int) -> None:
    """The codestream sizes the decoder's buffers, not Rows and Columns: a
    JPEG 2000 frame claiming 200000 x 200000 took a worker to 5 GB."""
    size = jpeg2000.image_size(frame)
    if size is not None and size != (rows, columns):
        raise InvalidInput(
            f"the {syntax.name} codestream is {size[0]} x {size[1]} pixels, but "
            f"Rows and Columns say {rows} x {columns}; not decoded"
        )


def _native(dataset: Dataset, syntax: UID, rows: int, columns: int) -> np.ndarray:
    allocated = required_integer(dataset, "BitsAllocated")
    samples = integer(dataset, "SamplesPerPixel") or 1
    if allocated not in (8, 16, 32) or samples != 1:
        raise UnsupportedInput(
            f"native pixel data with Bits Allocated {allocated} and Samples per "
            f"Pixel {samples} is not read; radiographs use 8 or 16 bits, 1 sample"
        )
    order = ">" if syntax == ExplicitVRBigEndian else "<"
    dtype = np.dtype(f"{order}u{allocated // 8}")
    data = dataset.PixelData
    needed = rows * columns * dtype.itemsize
    if len(data) < needed:
        raise InvalidInput(
            f"pixel data is truncated: {len(data)} bytes present, {needed} needed "
            f"for one {rows} x {columns} frame of {allocated} bits; "
            "resend the complete file"
        )
    return np.frombuffer(data, dtype=dtype, count=rows * columns).reshape(rows, columns)


def _first_frame(dataset: Dataset, syntax: UID) -> bytes:
    frames = integer(dataset, "NumberOfFrames") or 1
    try:
        return get_frame(dataset.PixelData, 0, number_of_frames=frames)
    except _CODEC_ERRORS as exc:
        raise InvalidInput(
            f"the encapsulated {syntax.name} pixel data has no readable first "
            f"frame: {_one_line(exc)}"
        ) from exc


def _reduced(
    dataset: Dataset,
    syntax: UID,
    frame: bytes,
    rows: int,
    columns: int,
    min_rows: int,
    min_columns: int,
) -> StoredPixels | None:
    if syntax in (JPEG2000Lossless, JPEG2000):
        return _reduced_jpeg2000(frame, syntax, rows, columns, min_rows, min_columns)
    if syntax == JPEGBaseline8Bit and integer(dataset, "BitsAllocated") == 8:
        return _reduced_jpeg(frame, rows, columns, min_rows, min_columns)
    return None


def _reduced_jpeg2000(
    frame: bytes, syntax: UID, rows: int, columns: int, min_rows: int, min_columns: int
) -> StoredPixels | None:
    levels = jpeg2000.decomposition_levels(frame)
    if levels is None or not jpeg2000.reduced_decoding_available():
        return None
    level = jpeg2000.reduction_level(rows, columns, min_rows, min_columns, levels)
    if level == 0:
        return None
    try:
        values = jpeg2000.decode_reduced(frame, level)
    except _CODEC_ERRORS as exc:
        raise InvalidInput(
            f"the {syntax.name} codestream cannot be decoded: {_one_line(exc)}; "
            "it is damaged or not what the transfer syntax says"
        ) from exc
    step = 2**level
    expected = (math.ceil(rows / step), math.ceil(columns / step))
    if values.ndim != 2 or values.shape != expected:
        raise InvalidInput(
            f"the {syntax.name} codestream decodes to {values.shape}, not the "
            f"{expected} that Rows {rows} and Columns {columns} give at 1/{step}"
        )
    return StoredPixels(values, rows, columns, step)


def _reduced_jpeg(
    frame: bytes, rows: int, columns: int, min_rows: int, min_columns: int
) -> StoredPixels | None:
    try:
        from PIL import Image  # optional: full-size fallback through pylibjpeg
    except ImportError:
        return None
    scale = next(
        (
            s
            for s in _DCT_SCALES
            if math.ceil(rows / s) >= min_rows and math.ceil(columns / s) >= min_columns
        ),
        1,
    )
    if scale == 1:
        return None
    try:
        with Image.open(io.BytesIO(frame)) as image:
            if image.mode != "L" or image.size != (columns, rows):
                return None
            # draft() picks the largest scale whose result still covers the
            # request; asking for the floor lands on exactly 1/scale.
            image.draft("L", (max(1, columns // scale), max(1, rows // scale)))
            values = np.asarray(image)
    except _CODEC_ERRORS as exc:
        raise InvalidInput(
            f"the baseline JPEG cannot be decoded: {_one_line(exc)}"
        ) from exc
    reduction = round(columns / values.shape[1]) if values.shape[1] else 1
    expected = (math.ceil(rows / reduction), math.ceil(columns / reduction))
    if values.shape != expected:
        return None
    return StoredPixels(values, rows, columns, reduction)


def _full_decode(dataset: Dataset, syntax: UID) -> np.ndarray:
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as exc:
        raise UnsupportedInput(
            f"transfer syntax {syntax} ({syntax.name}) has no decoder: {exc}"
        ) from exc
    if not decoder.is_available:
        raise UnsupportedInput(
            f"transfer syntax {syntax} ({syntax.name}) needs a codec that is not "
            f"installed: {decoder.missing_dependencies}"
        )
    plugin = _PREFERRED_PLUGINS.get(str(syntax), "")
    if plugin not in decoder.available_plugins:
        plugin = ""
    try:
        values, _ = decoder.as_array(dataset, index=0, raw=True, decoding_plugin=plugin)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        # Any failure, a panic included: pylibjpeg-rle is written in Rust and
        # panics on some damaged data, which pyo3 raises as PanicException, a
        # BaseException that a worker process cannot pickle back.
        raise InvalidInput(
            f"the {syntax.name} pixel data cannot be decoded: {_one_line(exc)}; "
            "it is damaged or not what the transfer syntax says"
        ) from exc
    if values.ndim != 2:
        raise UnsupportedInput(
            f"the {syntax.name} pixel data decodes to shape {values.shape}; only "
            "single-sample (grayscale) images are read"
        )
    return values


def _one_line(exc: BaseException) -> str:
    """A codec's message on one line: pydicom joins its plugins' errors, and
    OpenJPEG its own, on several."""
    return " ".join(str(exc).split())
