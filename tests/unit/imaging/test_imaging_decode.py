"""read_radiograph on real objects: codecs, truncation, files without meta, polarity."""

import io
import pickle
from datetime import tzinfo

import numpy as np
import pytest
from cxrwatch.core.errors import InvalidInput, UnsupportedInput
from cxrwatch.core.manifest import ImageSpec
from cxrwatch.imaging.dataset import parse_dataset
from cxrwatch.imaging.decode import read_radiograph
from cxrwatch.imaging.grayscale import GrayscalePipeline
from cxrwatch.imaging.pixel_data import decode_stored_values
from cxrwatch.imaging.policy import NotScored
from cxrwatch.imaging.resampling import Letterbox, resample
from pydicom.dataset import FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    MPEG2MPML,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from tests.unit.imaging.samples import (
    FODICOM_CHEST,
    dataset,
    rle_chest,
    sample,
    to_bytes,
    with_noise,
)


def _stored_full_size(raw: bytes) -> np.ndarray:
    ds = parse_dataset(raw)
    stored = decode_stored_values(ds, int(ds.Rows), int(ds.Columns))
    assert stored.reduction == 1
    return np.asarray(stored.values, dtype=np.int64)


@pytest.mark.parametrize("image", ["RG1", "RG3"])
def test_jpeg2000_lossless_decodes_to_the_uncompressed_array(image: str) -> None:
    lossless = _stored_full_size(sample(f"{image}_J2KR.dcm"))
    uncompressed = _stored_full_size(sample(f"{image}_UNCR.dcm"))

    np.testing.assert_array_equal(lossless, uncompressed)


@pytest.mark.parametrize("image", ["RG1", "RG3"])
def test_model_input_is_identical_for_lossless_and_uncompressed_at_full_size(
    image: str, utc: tzinfo
) -> None:
    ds = parse_dataset(sample(f"{image}_UNCR.dcm"))
    spec = ImageSpec(height=int(ds.Rows), width=int(ds.Columns))

    lossless = read_radiograph(sample(f"{image}_J2KR.dcm"), spec, utc, policy=None)
    uncompressed = read_radiograph(sample(f"{image}_UNCR.dcm"), spec, utc, policy=None)

    np.testing.assert_array_equal(lossless.pixels, uncompressed.pixels)


@pytest.mark.parametrize(
    "name", ["RG1_J2KR.dcm", "RG1_J2KI.dcm", "RG3_J2KR.dcm", "RG3_J2KI.dcm"]
)
def test_reduced_resolution_stays_within_one_percent_of_full_decode(
    name: str, utc: tzinfo, spec: ImageSpec
) -> None:
    """Fidelity guard: reduced decode vs full decode + the same area averaging."""
    raw = sample(name)
    ds = parse_dataset(raw)
    pipeline = GrayscalePipeline.from_dataset(ds)
    box = Letterbox.fit(int(ds.Rows), int(ds.Columns), spec)
    full = decode_stored_values(ds, int(ds.Rows), int(ds.Columns))
    reference = resample(full.values, pipeline.apply, box)

    reduced = read_radiograph(raw, spec, utc, policy=None)

    assert reduced.reduction >= 4
    difference = np.abs(reduced.pixels[0] - reference)
    assert difference.mean() < 0.01
    assert np.corrcoef(reduced.pixels[0].ravel(), reference.ravel())[0, 1] > 0.99


def test_monochrome1_chest_is_dark_in_the_lungs_and_bright_on_the_spine(
    utc: tzinfo,
) -> None:
    """fodicom's chest, MONOCHROME1, 10 bits, window 550 / 1024, at native size.

    Hand-worked (LINEAR window, then inversion):
    * lung (200, 120) stores 697: (697 - 549.5) / 1023 + 0.5 = 0.644184 -> 0.355816
    * spine (300, 220) stores 239: (239 - 549.5) / 1023 + 0.5 = 0.196481 -> 0.803519
    """
    ds = dataset(FODICOM_CHEST)
    stored = np.frombuffer(ds.PixelData, "<u2").reshape(440, 440)
    assert stored[200, 120] == 697 and stored[300, 220] == 239

    decoded = read_radiograph(
        sample(FODICOM_CHEST), ImageSpec(height=440, width=440), utc
    )

    pixels = decoded.pixels[0]
    assert pixels[200, 120] == pytest.approx(0.355816, abs=1e-5)
    assert pixels[300, 220] == pytest.approx(0.803519, abs=1e-5)
    assert pixels[150:250, 90:150].mean() < pixels[150:300, 205:235].mean() - 0.2


@pytest.mark.parametrize(
    "name", ["RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm", "dtf_WG04__RG1_JLSN.dcm"]
)
def test_rg1_at_model_size_keeps_the_polarity(
    name: str, utc: tzinfo, spec: ImageSpec
) -> None:
    """RG1 is 1955 x 1841, letterboxed to 224 x 211 with 6 and 7 black columns."""
    decoded = read_radiograph(sample(name), spec, utc)

    pixels = decoded.pixels
    assert pixels.shape == (1, 224, 224) and pixels.dtype == np.float32
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0
    assert (pixels[0, :, :6] == 0).all() and (pixels[0, :, -7:] == 0).all()
    lungs = pixels[0, 60:140, 40:80].mean()
    spine = pixels[0, 60:140, 105:120].mean()
    assert lungs < spine


def test_files_without_preamble_or_meta_are_read(utc: tzinfo, spec: ImageSpec) -> None:
    """Bare data sets: the syntax is inferred; the policy then reads their modality."""
    with pytest.raises(NotScored, match="modality CT"):
        read_radiograph(sample("no_meta.dcm"), spec, utc)
    with pytest.raises(NotScored, match="modality RTPLAN"):
        read_radiograph(sample("ExplVR_LitEndNoMeta.dcm"), spec, utc)

    chest = read_radiograph(sample(FODICOM_CHEST), spec, utc)

    assert chest.header.transfer_syntax_uid == "1.2.840.10008.1.2"
    assert chest.header.sop_instance_uid == "1.2.392.200036.9125.0.19950720112207"


def test_a_file_cut_eight_bytes_short_says_the_pixel_data_is_truncated(
    utc: tzinfo, spec: ImageSpec
) -> None:
    with pytest.raises(InvalidInput, match="pixel data is truncated"):
        read_radiograph(
            sample("emri_small_jpeg_2k_lossless_too_short.dcm"), spec, utc, policy=None
        )


@pytest.mark.parametrize("name", ["RG1_UNCR.dcm", "RG1_J2KR.dcm"])
@pytest.mark.parametrize("cut", [1000, 2_000_000])
def test_cut_objects_are_invalid_with_a_clear_reason(
    name: str, cut: int, utc: tzinfo, spec: ImageSpec
) -> None:
    raw = sample(name)

    with pytest.raises(InvalidInput, match="pixel data is truncated"):
        read_radiograph(raw[:-cut], spec, utc)


def test_a_cut_in_the_padding_after_the_pixels_is_still_a_cut_object(
    utc: tzinfo, spec: ImageSpec
) -> None:
    """RG1_UNCR ends with 126 bytes of Data Set Trailing Padding (FFFC,FFFC)."""
    raw = sample("RG1_UNCR.dcm")

    with pytest.raises(InvalidInput, match=r"element \(FFFC,FFFC\) is truncated"):
        read_radiograph(raw[:-8], spec, utc)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not dicom",
        bytes(range(256)) * 40,
        b"\x00" * 4096,
        b"DICM" + b"\x00" * 300,
    ],
)
def test_garbage_is_invalid_input(raw: bytes, utc: tzinfo, spec: ImageSpec) -> None:
    with pytest.raises(InvalidInput):
        read_radiograph(raw, spec, utc)


def test_explicit_big_endian_matches_little_endian(utc: tzinfo) -> None:
    spec = ImageSpec(height=64, width=64)

    big = read_radiograph(sample("MR_small_bigendian.dcm"), spec, utc, policy=None)
    little = read_radiograph(sample("MR_small.dcm"), spec, utc, policy=None)

    assert big.header.transfer_syntax_uid == "1.2.840.10008.1.2.2"
    np.testing.assert_array_equal(big.pixels, little.pixels)


def test_deflated_matches_the_original(utc: tzinfo, spec: ImageSpec) -> None:
    ds = dataset(FODICOM_CHEST)
    ds.PatientID = "DEFLATE1"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    deflated = to_bytes(ds)

    read = read_radiograph(deflated, spec, utc)
    original = read_radiograph(sample(FODICOM_CHEST), spec, utc)

    assert read.header.transfer_syntax_uid == DeflatedExplicitVRLittleEndian
    np.testing.assert_array_equal(read.pixels, original.pixels)


def test_rle_matches_the_uncompressed_array() -> None:
    rle = _stored_full_size(sample("dtf_WG04__RG3_RLE.dcm"))
    uncompressed = _stored_full_size(sample("RG3_UNCR.dcm"))

    np.testing.assert_array_equal(rle, uncompressed)


def test_rle_that_makes_the_codec_panic_is_invalid_input_that_pickles(
    utc: tzinfo, spec: ImageSpec
) -> None:
    # pylibjpeg-rle panics here; pyo3's PanicException is a BaseException that
    # the decoder pool could not pickle back ("Can't pickle ... PanicException").
    damaged = with_noise(rle_chest(), 200, -100)

    with pytest.raises(InvalidInput) as refused:
        read_radiograph(damaged, spec, utc)

    reason = str(refused.value)
    assert reason.startswith(
        "the RLE Lossless pixel data cannot be decoded: index out of bounds"
    )
    copy = pickle.loads(pickle.dumps(refused.value))
    assert type(copy) is InvalidInput and str(copy) == reason


def test_rle_refused_by_every_decoder_is_named_on_one_line(
    utc: tzinfo, spec: ImageSpec
) -> None:
    damaged = with_noise(rle_chest(), 16, 80)  # the RLE header's segment offsets

    with pytest.raises(InvalidInput) as refused:
        read_radiograph(damaged, spec, utc)

    reason = str(refused.value)
    assert "\n" not in reason
    assert "pylibjpeg: Invalid segment offset found in the RLE header" in reason
    assert "pydicom: The RLE header specifies an invalid number of segments" in reason


_TOO_LARGE = (
    "Rows {} x Columns {} is larger than a radiograph "
    "(at most 8192 pixels a side); not decoded"
)
_EMPTY = "the image is {} x {} pixels; both must be > 0"


@pytest.mark.parametrize(
    ("rows", "columns", "reason"),
    [
        # The RLE decoder sized its output from such a header: 8 GB, 20 s.
        (65535, 65535, _TOO_LARGE),
        (8193, 2048, _TOO_LARGE),
        # These divided by zero while fitting the image to the model's size.
        (0, 1760, _EMPTY),
        (1760, 0, _EMPTY),
    ],
)
def test_dimensions_no_radiograph_has_are_refused_before_decoding(
    rows: int, columns: int, reason: str, utc: tzinfo, spec: ImageSpec
) -> None:
    ds = rle_chest()
    ds.Rows, ds.Columns = rows, columns

    with pytest.raises(InvalidInput) as refused:
        read_radiograph(to_bytes(ds), spec, utc)

    assert str(refused.value) == reason.format(rows, columns)


def test_a_jpeg2000_codestream_larger_than_its_header_is_not_decoded(
    utc: tzinfo, spec: ImageSpec
) -> None:
    # RG1 is 1955 rows x 1841 columns. Its SIZ marker (after SOC, FF4F) says
    # how large the decoder's buffers are; made 200000 x 200000 it took a
    # worker to 5 GB before the size mismatch was seen.
    ds = dataset("RG1_J2KR.dcm")
    ds.BodyPartExamined = "CHEST"
    pixels = bytearray(ds.PixelData)
    siz = pixels.index(b"\xff\x4f\xff\x51") + 2
    pixels[siz + 6 : siz + 14] = (200000).to_bytes(4, "big") * 2  # Xsiz, Ysiz
    ds.PixelData = bytes(pixels)

    with pytest.raises(InvalidInput) as refused:
        read_radiograph(to_bytes(ds), spec, utc)

    assert str(refused.value) == (
        "the JPEG 2000 Image Compression (Lossless Only) codestream is "
        "200000 x 200000 pixels, but Rows and Columns say 1955 x 1841; not decoded"
    )


def test_jpeg_ls_and_lossless_jpeg_decode_to_their_documented_ranges() -> None:
    """Ranges from shared/data/INVENTORY.md, found with another decoder."""
    jpeg_ls = _stored_full_size(sample("dtf_WG04__RG1_JLSN.dcm"))
    lossless_sv1 = _stored_full_size(sample("dtf_WG04__RG2_JPLL.dcm"))

    assert (jpeg_ls.min(), jpeg_ls.max()) == (871, 26481)
    assert (lossless_sv1.min(), lossless_sv1.max()) == (0, 893)


def test_jpeg_extended_12_bit_decodes() -> None:
    stored = _stored_full_size(sample("JPGExtended.dcm"))

    assert stored.shape == (1024, 256) and stored.min() >= 0 and stored.max() < 4096


def test_baseline_jpeg_is_scaled_in_the_dct_domain(utc: tzinfo) -> None:
    """fodicom's chest as 8-bit baseline JPEG: 1/4 decode vs full, same averaging."""
    from PIL import Image

    ds = dataset(FODICOM_CHEST)
    stored = np.frombuffer(ds.PixelData, "<u2").reshape(440, 440)
    eight_bit = (stored >> 2).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(eight_bit).save(buffer, format="JPEG", quality=95)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PatientID = "JPEG1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.WindowCenter, ds.WindowWidth = 137, 256
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    raw = to_bytes(ds)
    spec = ImageSpec(height=110, width=110)
    parsed = parse_dataset(raw)
    full = decode_stored_values(parsed, 440, 440)
    pipeline = GrayscalePipeline.from_dataset(parsed)
    reference = resample(full.values, pipeline.apply, Letterbox.fit(440, 440, spec))

    reduced = read_radiograph(raw, spec, utc)

    assert reduced.reduction == 4
    assert np.abs(reduced.pixels[0] - reference).mean() < 0.01


def test_an_undecodable_syntax_is_unsupported_and_named(
    utc: tzinfo, spec: ImageSpec
) -> None:
    ds = dataset("emri_small_jpeg_2k_lossless.dcm")
    ds.file_meta.TransferSyntaxUID = MPEG2MPML

    with pytest.raises(UnsupportedInput, match=r"1\.2\.840\.10008\.1\.2\.4\.100"):
        read_radiograph(to_bytes(ds), spec, utc, policy=None)


def test_native_pixel_data_shorter_than_the_frame_is_truncated(
    utc: tzinfo, spec: ImageSpec
) -> None:
    ds = dataset(FODICOM_CHEST)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.PixelData = ds.PixelData[:-440]

    with pytest.raises(InvalidInput, match="pixel data is truncated: 386760 bytes"):
        read_radiograph(to_bytes(ds), spec, utc)
