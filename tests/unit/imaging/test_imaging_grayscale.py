"""The value transforms, checked against values worked out by hand."""

import dataclasses
from datetime import tzinfo

import numpy as np
import pytest
from cxrwatch.core.errors import InvalidInput
from cxrwatch.core.manifest import ImageSpec
from cxrwatch.imaging.decode import read_radiograph
from cxrwatch.imaging.grayscale import GrayscalePipeline, Window
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.unit.imaging.samples import dataset, sample, to_bytes

CR_16X16 = "dicomdirtests/77654033/CR1/6154"


def _cr_16x16() -> tuple[Dataset, np.ndarray]:
    ds = dataset(CR_16X16)
    stored = np.frombuffer(ds.PixelData, "<u2").reshape(16, 16)
    return ds, stored


def test_cr_window_follows_the_rescale_then_inverts() -> None:
    """PS3.3 C.11: the window applies to the rescaled values, then MONOCHROME1 flips.

    The object stores 12 of 16 bits, Rescale Slope 0.684, Intercept 200 (type OD),
    window 1600 / 2800: in rescaled units the window spans 200..3000, the whole
    range 0.684 * [0, 4095] + 200, which is what a window set for the rescaled
    values looks like. By hand, LINEAR y = (x - (c - 0.5)) / (w - 1) + 0.5:

    * stored 1994 -> 1994 * 0.684 + 200 = 1563.896
      -> (1563.896 - 1599.5) / 2799 + 0.5 = 0.487280 -> inverted 0.512720
    * stored 2802 -> 2802 * 0.684 + 200 = 2116.568
      -> (2116.568 - 1599.5) / 2799 + 0.5 = 0.684733 -> inverted 0.315267
    """
    ds, stored = _cr_16x16()
    assert stored.min() == 1994 and stored.max() == 2802

    display = GrayscalePipeline.from_dataset(ds).apply(stored)

    assert display[stored == 1994] == pytest.approx(0.512720, abs=1e-5)
    assert display[stored == 2802] == pytest.approx(0.315267, abs=1e-5)


def test_window_on_stored_values_gives_the_issue_figures() -> None:
    """The issue's 0.359 / 0.070 (0.641 / 0.930 before inversion) are the window
    applied to the stored values, skipping the rescale:
    (1994 - 1599.5) / 2799 + 0.5 = 0.640943; (2802 - 1599.5) / 2799 + 0.5 = 0.929618.
    The pipeline does not do that (see the test above); this pins the arithmetic.
    """
    ds, stored = _cr_16x16()
    pipeline = GrayscalePipeline.from_dataset(ds)
    unscaled = dataclasses.replace(pipeline, slope=1.0, intercept=0.0)
    upright = dataclasses.replace(unscaled, invert=False)

    assert unscaled.apply(stored)[stored == 1994] == pytest.approx(0.359057, abs=1e-5)
    assert unscaled.apply(stored)[stored == 2802] == pytest.approx(0.070382, abs=1e-5)
    assert upright.apply(stored)[stored == 1994] == pytest.approx(0.640943, abs=1e-5)
    assert upright.apply(stored)[stored == 2802] == pytest.approx(0.929618, abs=1e-5)


def test_native_resolution_read_matches_the_transform(utc: tzinfo) -> None:
    """A spec equal to the image's size is an exact copy through the resize."""
    _, stored = _cr_16x16()

    decoded = read_radiograph(
        sample(CR_16X16), ImageSpec(height=16, width=16), utc, policy=None
    )

    assert decoded.pixels.shape == (1, 16, 16)
    assert decoded.pixels[0][stored == 1994] == pytest.approx(0.512720, abs=1e-5)
    assert decoded.pixels[0][stored == 2802] == pytest.approx(0.315267, abs=1e-5)


def test_junk_in_the_high_bits_is_masked(utc: tzinfo) -> None:
    """12 bits stored in 16: whatever sits in bits 12..15 changes nothing."""
    ds, stored = _cr_16x16()
    junk = np.random.default_rng(7).integers(1, 16, size=stored.shape, dtype=np.uint16)
    dirty = ds.copy()
    dirty.PixelData = (stored | (junk << 12)).astype("<u2").tobytes()
    spec = ImageSpec(height=16, width=16)

    clean_image = read_radiograph(to_bytes(ds), spec, utc, policy=None)
    dirty_image = read_radiograph(to_bytes(dirty), spec, utc, policy=None)

    assert (np.frombuffer(dirty.PixelData, "<u2") >= 4096).all()
    np.testing.assert_array_equal(dirty_image.pixels, clean_image.pixels)


def test_signed_values_are_sign_extended_from_bits_stored() -> None:
    pipeline = GrayscalePipeline(
        bits_allocated=16, bits_stored=12, high_bit=11, signed=True
    )
    # 0x0FFF is -1 in 12-bit two's complement, 0x0800 is -2048, 0x07FF 2047;
    # 0xF000 is junk above bit 11.
    stored = np.array([0x0FFF, 0x0800, 0x07FF, 0xF005], dtype="<u2")

    assert pipeline.stored_values(stored).tolist() == [-1, -2048, 2047, 5]


def test_high_bit_above_bits_stored_shifts_down() -> None:
    pipeline = GrayscalePipeline(
        bits_allocated=16, bits_stored=12, high_bit=15, signed=False
    )

    assert pipeline.stored_values(np.array([0xABC0], "<u2")).tolist() == [0xABC]


def test_window_functions() -> None:
    x = np.array([75.0, 100.0, 125.0], dtype=np.float32)

    exact = Window(100, 50, "LINEAR_EXACT").apply(x)
    sigmoid = Window(100, 50, "SIGMOID").apply(x)

    np.testing.assert_allclose(exact, [0.0, 0.5, 1.0], atol=1e-6)
    # 1 / (1 + exp(-4 * (x - c) / w)): exp(2) = 7.389 -> 0.119203, 0.5, 0.880797
    np.testing.assert_allclose(sigmoid, [0.119203, 0.5, 0.880797], atol=1e-6)


def test_first_of_several_windows_is_used() -> None:
    ds = _grayscale_header()
    ds.WindowCenter = [100, 2000]
    ds.WindowWidth = [51, 400]

    display = GrayscalePipeline.from_dataset(ds).apply(np.array([100], "<u2"))

    # (100 - 99.5) / 50 + 0.5 = 0.51
    assert display.tolist() == pytest.approx([0.51])


def test_modality_and_voi_luts() -> None:
    ds = _grayscale_header()
    modality = Dataset()
    modality.LUTDescriptor = [4, 10, 16]
    modality.LUTData = [0, 100, 200, 300]
    voi = Dataset()
    voi.LUTDescriptor = [301, 0, 8]
    voi.LUTData = [min(255, value) for value in range(301)]
    ds.ModalityLUTSequence = Sequence([modality])
    ds.VOILUTSequence = Sequence([voi])
    pipeline = GrayscalePipeline.from_dataset(ds)
    stored = np.array([9, 11, 12, 40], "<u2")

    # 9 is below the first mapped value 10 and takes entry 0; 40 takes the last.
    assert pipeline.modality_values(stored).tolist() == [0, 100, 200, 300]
    # VOI: entries 0, 100, 200, 255 of an 8-bit LUT, over 255
    expected = [0.0, 100 / 255, 200 / 255, 1.0]
    np.testing.assert_allclose(pipeline.apply(stored), expected, atol=1e-6)


def test_without_voi_the_image_range_spans_zero_to_one_inverted() -> None:
    ds = _grayscale_header()
    ds.PhotometricInterpretation = "MONOCHROME1"
    stored = np.array([[100, 300], [200, 500]], "<u2")

    display = GrayscalePipeline.from_dataset(ds).apply(stored)

    # (x - 100) / 400, then 1 - y: 100 -> 1, 300 -> 0.5, 200 -> 0.75, 500 -> 0
    np.testing.assert_allclose(display, [[1.0, 0.5], [0.75, 0.0]], atol=1e-6)


def test_inconsistent_bit_depths_are_invalid() -> None:
    ds = _grayscale_header()
    ds.BitsStored = 17

    with pytest.raises(InvalidInput, match="Bits Stored 17"):
        GrayscalePipeline.from_dataset(ds)


def _grayscale_header() -> Dataset:
    ds = Dataset()
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds
