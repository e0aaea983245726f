"""Where the imaging tests find real DICOM objects, and a few ways to alter them."""

import io
import random
from pathlib import Path

import pytest
from cxrwatch.core.manifest import ImageSpec
from pydicom import dcmread
from pydicom.data import get_charset_files, get_testdata_file
from pydicom.dataset import Dataset

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "dicom"
MODEL_SPEC = ImageSpec(height=224, width=224)
FODICOM_CHEST = "fodicom__CR-MONO1-10-chest.dcm"


def sample(name: str) -> bytes:
    """Bytes of a file in shared/data/dicom, or of a pydicom / pydicom-data one."""
    shared = SHARED / name
    if shared.exists():
        return shared.read_bytes()
    if name.startswith("charset_files/"):
        found = next(iter(get_charset_files(name.split("/", 1)[1])), None)
    else:
        found = get_testdata_file(name)
    if found is None:
        pytest.skip(f"{name} is in neither pydicom's test data nor {SHARED}")
    return Path(found).read_bytes()


def dataset(name: str) -> Dataset:
    """A sample parsed by pydicom, for the tests to alter."""
    return dcmread(io.BytesIO(sample(name)), force=True)


def to_bytes(ds: Dataset, *, as_file: bool = True) -> bytes:
    """Serialise a data set: a Part 10 file, or the bare data set as read."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=as_file)
    return buffer.getvalue()


def rle_chest() -> Dataset:
    """RG3 (a tibia) in RLE Lossless, labelled a chest so that the policy scores it."""
    ds = dataset("dtf_WG04__RG3_RLE.dcm")
    ds.BodyPartExamined = "CHEST"
    return ds


def with_noise(ds: Dataset, start: int, end: int, seed: int = 0) -> bytes:
    """``ds`` serialised with its Pixel Data bytes ``[start:end]`` made random."""
    pixels = bytearray(ds.PixelData)
    pixels[start:end] = random.Random(seed).randbytes(len(pixels[start:end]))
    ds.PixelData = bytes(pixels)
    return to_bytes(ds)
