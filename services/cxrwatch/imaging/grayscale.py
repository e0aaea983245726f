"""Stored pixel values to display values in [0, 1], in the standard's order.

PS3.3 C.11 (grayscale pipeline), applied per pixel:

1. **stored bits**: keep Bits Stored bits ending at High Bit; whatever a sender
   left in the other bits of the allocated word is dropped;
2. **sign**: with Pixel Representation 1, the stored bits are two's complement;
3. **modality LUT**: the Modality LUT Sequence, else Rescale Slope and
   Intercept (1 and 0 when absent);
4. **VOI LUT**: the first VOI LUT Sequence item, else the first Window Center
   and Window Width (objects often carry several presets; the first is the one
   the modality set as default), with VOI LUT Function LINEAR (the default),
   LINEAR_EXACT or SIGMOID. A width below 1 is no window. Without either, the
   image's own minimum and maximum after the modality LUT span [0, 1];
5. **polarity**: MONOCHROME1 (minimum is white) is inverted, so every output is
   MONOCHROME2: air and lungs dark, bone bright. Presentation LUT Shape is not
   applied: for DX it must be INVERSE exactly when the image is MONOCHROME1, so
   it says nothing the photometric interpretation does not.

The pipeline is elementwise, so it runs on strips of rows (see
:mod:`cxrwatch.imaging.resampling`) and on reduced-resolution decodes alike.
"""

from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from cxrwatch.core.errors import InvalidInput
from cxrwatch.imaging.dataset import (
    READ_ERRORS,
    integer,
    number,
    required_integer,
    text,
    values,
)


@dataclass(frozen=True)
class LookupTable:
    """A LUT: entries, the stored value mapped to the first one, output bits."""

    first_mapped: int
    table: np.ndarray
    bits: int

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Look each value up; values outside the table take its end entries."""
        index = np.clip(x.astype(np.int64) - self.first_mapped, 0, len(self.table) - 1)
        return self.table[index.astype(np.intp)]

    @property
    def output_max(self) -> float:
        """Largest value the LUT's declared bit depth can hold."""
        return float(2**self.bits - 1)


@dataclass(frozen=True)
class Window:
    """A VOI window: centre, width and function (PS3.3 C.11.2.1.2)."""

    center: float
    width: float
    function: str = "LINEAR"

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Map values to [0, 1]."""
        c, w = np.float32(self.center), np.float32(self.width)
        if self.function == "SIGMOID":
            y = 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
        elif self.function == "LINEAR_EXACT":
            y = (x - c) / w + 0.5
        else:
            y = (x - (c - 0.5)) / (w - 1.0) + 0.5
        return np.clip(np.asarray(y, dtype=np.float32), 0.0, 1.0)


@dataclass(frozen=True)
class GrayscalePipeline:
    """The value transforms of one image, read from its attributes."""

    bits_allocated: int
    bits_stored: int
    high_bit: int
    signed: bool
    slope: float = 1.0
    intercept: float = 0.0
    modality_lut: LookupTable | None = None
    window: Window | None = None
    voi_lut: LookupTable | None = None
    invert: bool = False

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> "GrayscalePipeline":
        """Read the pipeline's attributes.

        Raises
        ------
        InvalidInput
            If a bit depth is inconsistent or a LUT is malformed.
        """
        allocated = required_integer(dataset, "BitsAllocated")
        stored = integer(dataset, "BitsStored") or allocated
        high = integer(dataset, "HighBit")
        high = stored - 1 if high is None else high
        if not 0 < stored <= allocated or not stored - 1 <= high < allocated:
            raise InvalidInput(
                f"Bits Allocated {allocated}, Bits Stored {stored} and High Bit "
                f"{high} are inconsistent; they must satisfy "
                "HighBit + 1 >= BitsStored and HighBit < BitsAllocated"
            )
        photometric = (text(dataset, "PhotometricInterpretation") or "").upper()
        return cls(
            bits_allocated=allocated,
            bits_stored=stored,
            high_bit=high,
            signed=integer(dataset, "PixelRepresentation") == 1,
            slope=_or_default(number(dataset, "RescaleSlope"), 1.0),
            intercept=_or_default(number(dataset, "RescaleIntercept"), 0.0),
            modality_lut=_lut(dataset, "ModalityLUTSequence"),
            window=_window(dataset),
            voi_lut=_lut(dataset, "VOILUTSequence"),
            invert=photometric == "MONOCHROME1",
        )

    @property
    def needs_value_range(self) -> bool:
        """True when the image's own range stands in for a missing VOI."""
        return self.voi_lut is None and self.window is None

    def stored_values(self, stored: np.ndarray) -> np.ndarray:
        """Steps 1 and 2: the stored bits as signed or unsigned integers."""
        if stored.dtype.kind not in "iu":
            raise InvalidInput(f"stored values of type {stored.dtype} are not integers")
        unsigned = stored.view(stored.dtype.str.replace("i", "u"))
        shift = self.high_bit + 1 - self.bits_stored
        if shift:
            unsigned = unsigned >> shift
        mask = (1 << self.bits_stored) - 1
        if self.bits_stored < unsigned.dtype.itemsize * 8:
            unsigned = unsigned & unsigned.dtype.type(mask)
        if not self.signed:
            return unsigned
        values32 = unsigned.astype(np.int64 if self.bits_stored > 31 else np.int32)
        sign = 1 << (self.bits_stored - 1)
        extended: np.ndarray = np.bitwise_xor(values32, sign) - sign
        return extended

    def modality_values(self, stored: np.ndarray) -> np.ndarray:
        """Steps 1 to 3: values in the modality's units, as float32."""
        x = self.stored_values(stored)
        if self.modality_lut is not None:
            return self.modality_lut.apply(x).astype(np.float32)
        scaled = x.astype(np.float32)
        if self.slope != 1.0:
            scaled *= np.float32(self.slope)
        if self.intercept != 0.0:
            scaled += np.float32(self.intercept)
        return scaled

    def value_range(self, stored: np.ndarray) -> tuple[float, float]:
        """The image's minimum and maximum after the modality LUT."""
        low, high = int(stored.min()), int(stored.max())
        probe = np.array([low, high], dtype=stored.dtype)
        if self.modality_lut is None:
            ends = self.modality_values(probe)
            return float(ends.min()), float(ends.max())
        # A LUT need not be monotonic: look at every entry the image can reach.
        span = np.arange(low, high + 1, dtype=np.int64)
        mapped = self.modality_lut.apply(self.stored_values(span))
        return float(mapped.min()), float(mapped.max())

    def apply(
        self, stored: np.ndarray, value_range: tuple[float, float] | None = None
    ) -> np.ndarray:
        """Steps 1 to 5: stored values to float32 display values in [0, 1].

        ``value_range`` (from :meth:`value_range` over the whole image) is needed
        only when there is no VOI, and only when ``stored`` is a part of the image.
        """
        affine = self._affine(stored, value_range)
        if affine is not None:
            # Rescale, a linear window and the inversion compose into one
            # affine map; clipping once at the end is the same as clipping the
            # window and inverting after.
            scale, offset = affine
            y = self.stored_values(stored).astype(np.float32)
            y *= np.float32(scale)
            y += np.float32(offset)
            return np.clip(y, 0.0, 1.0, out=y)
        x = self.modality_values(stored)
        if self.voi_lut is not None:
            y = self.voi_lut.apply(x).astype(np.float32)
            y /= np.float32(self.voi_lut.output_max)
        else:
            assert self.window is not None  # _affine covers the other cases
            y = self.window.apply(x)
        if self.invert:
            y = 1.0 - y
        return np.clip(y, 0.0, 1.0, out=y).astype(np.float32, copy=False)

    def _affine(
        self, stored: np.ndarray, value_range: tuple[float, float] | None
    ) -> tuple[float, float] | None:
        """Steps 3 to 5 as ``scale * stored + offset`` when they are all linear."""
        if self.modality_lut is not None or self.voi_lut is not None:
            return None
        if self.window is None:
            low, high = value_range or self.value_range(stored)
            if high <= low:
                return (0.0, 1.0) if self.invert else (0.0, 0.0)
            scale, offset = 1.0 / (high - low), -low / (high - low)
        elif self.window.function == "LINEAR":
            c, w = self.window.center, self.window.width
            scale, offset = 1.0 / (w - 1.0), 0.5 - (c - 0.5) / (w - 1.0)
        elif self.window.function == "LINEAR_EXACT":
            c, w = self.window.center, self.window.width
            scale, offset = 1.0 / w, 0.5 - c / w
        else:
            return None
        scale, offset = scale * self.slope, scale * self.intercept + offset
        if self.invert:
            scale, offset = -scale, 1.0 - offset
        return scale, offset


def _or_default(found: float | None, default: float) -> float:
    return default if found is None else found


def _window(dataset: Dataset) -> Window | None:
    center = number(dataset, "WindowCenter")
    width = number(dataset, "WindowWidth")
    if center is None or width is None or width < 1.0:
        return None
    function = (text(dataset, "VOILUTFunction") or "LINEAR").upper()
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
        raise InvalidInput(
            f"VOI LUT Function {function!r} is not LINEAR, LINEAR_EXACT or SIGMOID"
        )
    if function != "LINEAR" and width <= 0:
        return None
    return Window(center, width, function)


def _lut(dataset: Dataset, keyword: str) -> LookupTable | None:
    try:
        items = dataset.get(keyword)
        sequence = items[0] if items else None
    except READ_ERRORS as exc:
        raise InvalidInput(f"{keyword} cannot be read: {exc}") from exc
    if sequence is None:
        return None
    descriptor = values(sequence, "LUTDescriptor", int)
    if len(descriptor) != 3:
        raise InvalidInput(
            f"{keyword} LUT Descriptor is {descriptor}; it needs three values: "
            "entries, first stored value mapped, bits per entry"
        )
    entries, first, bits = descriptor
    entries = entries or 65536
    table = _lut_data(sequence, dataset, bits)
    if len(table) < entries:
        raise InvalidInput(
            f"{keyword} declares {entries} entries but LUT Data holds {len(table)}"
        )
    if first >= 32768 and integer(dataset, "PixelRepresentation") == 1:
        first -= 65536  # the descriptor's second value is SS for signed images
    return LookupTable(first, table[:entries].astype(np.float32), bits)


def _lut_data(item: Dataset, dataset: Dataset, bits: int) -> np.ndarray:
    try:
        data = item.LUTData
    except READ_ERRORS as exc:
        raise InvalidInput(f"LUT Data cannot be read: {exc}") from exc
    if isinstance(data, bytes):
        _, little = dataset.original_encoding
        dtype = ("<" if little is not False else ">") + ("u1" if bits <= 8 else "u2")
        if bits <= 8 and len(data) % 2 == 0:
            dtype = dtype[0] + "u2"  # 8-bit entries are still stored in 16-bit words
        return np.frombuffer(data, dtype=dtype)
    return np.asarray(list(data) if not isinstance(data, int) else [data])
