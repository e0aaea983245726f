"""Reduced-resolution JPEG 2000 decoding: only the wavelet levels the model needs.

A JPEG 2000 codestream with N decomposition levels holds the image at 1/2,
1/4, ... 1/2**N of its size; OpenJPEG can stop decoding at any of them
(``cp_reduce``), skipping most of the entropy decoding and the inverse
transform. The model needs 224 pixels out of ~2000, so this cuts a chest's
decode from about 600 ms to about 20 ms.

pylibjpeg-openjpeg does not expose ``cp_reduce``; glymur does, over the
system's OpenJPEG (Debian ``libopenjp2-7``). glymur reads from a file, so the
codestream goes to a temporary file in ``/dev/shm`` when it exists (memory, not
disk). Without glymur or the library, :func:`reduced_decoding_available` says so
and callers decode at full size.

The level chosen is the deepest at which the image is still at least as large
as the size it will be averaged down to, so that the final area averaging
always has a downscale to do and the result stays close to full decoding
followed by the same averaging (a tested guard).
"""

import functools
import logging
import math
import os
import struct
import tempfile
import warnings

import numpy as np

logger = logging.getLogger(__name__)

_SOC_SIZ = b"\xff\x4f\xff\x51"
_COD = 0xFF52
_SOT = 0xFF90
_SOD = 0xFF93
_SCRATCH = "/dev/shm"  # noqa: S108 - memory-backed; files made by NamedTemporaryFile


@functools.cache
def reduced_decoding_available() -> bool:
    """True when glymur can reach an OpenJPEG library."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import glymur  # optional: full-size fallback
    except ImportError:
        logger.warning(
            "reduced-resolution JPEG 2000 decoding is off: glymur is not installed; "
            "JPEG 2000 images are decoded at full size (about 10x slower)"
        )
        return False
    version = str(glymur.version.openjpeg_version)
    if version in ("", "0.0.0"):
        logger.warning(
            "reduced-resolution JPEG 2000 decoding is off: glymur finds no "
            "libopenjp2 (install Debian's libopenjp2-7); decoding at full size"
        )
        return False
    return True


def image_size(codestream: bytes) -> tuple[int, int] | None:
    """Rows and columns of the image, from the SIZ marker that follows SOC.

    None when the bytes are no raw codestream or the marker is cut short.
    """
    if not codestream.startswith(_SOC_SIZ) or len(codestream) < 24:
        return None
    # Lsiz(2) Rsiz(2) Xsiz(4) Ysiz(4) XOsiz(4) YOsiz(4): the grid and its origin.
    width, height, left, top = struct.unpack_from(">IIII", codestream, 8)
    return height - top, width - left


def decomposition_levels(codestream: bytes) -> int | None:
    """Levels of the wavelet transform, from the COD marker of the main header.

    None when the bytes are no raw codestream (a JP2 file, say) or have no COD.
    """
    if not codestream.startswith(_SOC_SIZ):
        return None
    position = 2
    while position + 4 <= len(codestream):
        marker, length = struct.unpack_from(">HH", codestream, position)
        if marker in (_SOT, _SOD):
            return None
        if marker == _COD and position + 9 < len(codestream):
            # Lcod(2) Scod(1) SGcod(4: order, layers(2), MCT) then SPcod's levels.
            return int(codestream[position + 9])
        position += 2 + length
    return None


def reduction_level(
    rows: int, columns: int, min_rows: int, min_columns: int, levels: int
) -> int:
    """Deepest level whose image is still at least ``min_rows`` x ``min_columns``."""
    level = 0
    while level < levels:
        step = 2 ** (level + 1)
        if math.ceil(rows / step) < min_rows or math.ceil(columns / step) < min_columns:
            break
        level += 1
    return level


def decode_reduced(codestream: bytes, level: int) -> np.ndarray:
    """Decode a raw codestream at 1/2**level of its size.

    Raises
    ------
    RuntimeError, OSError, ValueError
        As glymur and OpenJPEG do on a damaged codestream.
    """
    import glymur  # checked by reduced_decoding_available

    scratch = _SCRATCH if os.access(_SCRATCH, os.W_OK) else None
    with tempfile.NamedTemporaryFile(suffix=".j2k", dir=scratch) as file:
        file.write(codestream)
        file.flush()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = glymur.Jp2k(file.name)
            step = 2**level
            decoded = image[::step, ::step]
    return np.asarray(decoded)
