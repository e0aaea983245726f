"""How fast and how lean the imaging step is, against MONAI's chain and a full decode.

For each sample (RG1 and RG3 in every transfer syntax pydicom-data has, plus
shared/data/dicom) it times, in this one process, the best of several runs
(interleaved, so that a busy machine slows all three alike) of:

* **ours**: read the file's bytes, :func:`read_radiograph` (parse, decode at
  reduced resolution where possible, transforms, area resize into 224 x 224)
  and serialise the event's JSON (the tensor alone for objects that cannot
  make an event, e.g. without Patient ID);
* **monai**: ``LoadImage`` with its pydicom reader, ``ScaleIntensity``, and
  ``Resize`` to the same size in ``area`` mode (no windowing, no inversion:
  the least MONAI needs to give a tensor of that size);
* **full**: pydicom's ``pixel_array`` alone, the full-size decode.

It also reports the peak of Python-tracked memory (tracemalloc, which sees
numpy's buffers but not a codec's own C allocations) during ours, against the
decoded image's size (rows x columns x bytes per sample). Goals: ours >= 3x
faster than MONAI on every chest, faster than the full decode alone on JPEG
2000, peak <= 2x the decoded image.

Run: ``.venv/bin/python benchmarks/imaging_bench.py [--repeat N]``. MONAI and
torch come from the benchmark extra; without them the MONAI column says why.
"""

import argparse
import os
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import pydicom
from cxrwatch.core.errors import InvalidInput
from cxrwatch.core.events import Tensor
from cxrwatch.core.manifest import ImageSpec
from cxrwatch.imaging.decode import DecodedRadiograph, read_radiograph
from pydicom.data import get_testdata_file

# The service's workers run BLAS on one thread (the pool is the parallelism);
# measure under the same setting. torch's own threads are left as they are,
# but told not to spin between calls.
SETTINGS = {"OPENBLAS_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
SPEC = ImageSpec(height=224, width=224)
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dicom"
PYDICOM_DATA = [
    f"{image}_{syntax}.dcm"
    for image in ("RG1", "RG3")
    for syntax in ("UNCR", "UNCI", "J2KR", "J2KI")
]
CHESTS = {"RG1", "fodicom__CR-MONO1-10-chest"}


@dataclass
class Row:
    """One sample's figures."""

    name: str
    syntax: str
    shape: str
    chest: bool
    ours_ms: float
    full_ms: float
    monai_ms: float | None
    peak_mb: float
    decoded_mb: float
    reduction: int


def samples() -> list[Path]:
    """Every sample file, pydicom-data's first."""
    found = [Path(str(get_testdata_file(name))) for name in PYDICOM_DATA]
    return found + sorted(SHARED.glob("*.dcm"))


def best_ms(actions: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Best wall time of each action over ``repeat`` interleaved rounds.

    One warm-up round first; an action that raises is reported and left out.
    """
    best: dict[str, float] = {}
    live = dict(actions)
    for round_ in range(repeat + 1):
        for name, action in list(live.items()):
            started = time.perf_counter()
            try:
                action()
            except Exception as exc:  # noqa: BLE001 - report and go on
                cause = exc.__cause__ or exc
                print(f"  {name} failed: {type(cause).__name__}: {cause}")
                del live[name]
                continue
            if round_:
                elapsed = (time.perf_counter() - started) * 1e3
                best[name] = min(best.get(name, elapsed), elapsed)
    return best


def ours(path: Path) -> DecodedRadiograph:
    """The whole imaging step on one file."""
    decoded = read_radiograph(path.read_bytes(), SPEC, UTC, policy=None)
    try:
        decoded.to_event().model_dump_json()
    except InvalidInput:
        Tensor.from_array(decoded.pixels).model_dump_json()
    return decoded


def full_decode(path: Path) -> object:
    """pydicom's full-size decode (a bare data set told its inferred syntax)."""
    ds = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, _ = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (
            pydicom.uid.ImplicitVRLittleEndian
            if implicit
            else pydicom.uid.ExplicitVRLittleEndian
        )
    return ds.pixel_array


def monai_chain() -> tuple[Callable[[Path], object] | None, str]:
    """MONAI's load, scale and resize, or None and why not."""
    try:
        import torch
        from monai.transforms import Compose, LoadImage, Resize, ScaleIntensity
    except ImportError as exc:
        return None, f"MONAI not installed ({exc}); pip install torch==2.13.0 monai"
    chain = Compose(
        [
            LoadImage(
                reader="PydicomReader", image_only=True, ensure_channel_first=True
            ),
            ScaleIntensity(),
            Resize((SPEC.height, SPEC.width), mode="area"),
        ]
    )
    return chain, f"MONAI with torch {torch.__version__}"


def peak_mb(path: Path) -> float:
    """Peak of tracemalloc-tracked memory during ours, in MB."""
    raw = path.read_bytes()
    tracemalloc.start()
    tracemalloc.reset_peak()
    decoded = read_radiograph(raw, SPEC, UTC, policy=None)
    Tensor.from_array(decoded.pixels).model_dump_json()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6


def measure(path: Path, repeat: int, monai: Callable[[Path], object] | None) -> Row:
    """Every figure for one file."""
    ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
    meta = ds.file_meta.get("TransferSyntaxUID")
    syntax = pydicom.uid.UID(str(meta)).name if meta else "bare data set"
    rows, columns = int(ds.Rows), int(ds.Columns)
    actions: dict[str, Callable[[], object]] = {
        "ours": lambda: ours(path),
        "full": lambda: full_decode(path),
    }
    if monai is not None:
        actions[f"MONAI on {path.name}"] = lambda: monai(path)
    times = best_ms(actions, repeat)
    return Row(
        name=path.stem,
        syntax=syntax,
        shape=f"{rows}x{columns}",
        chest=any(chest in path.stem for chest in CHESTS),
        ours_ms=times["ours"],
        full_ms=times["full"],
        monai_ms=times.get(f"MONAI on {path.name}"),
        peak_mb=peak_mb(path),
        decoded_mb=rows * columns * int(ds.BitsAllocated) / 8 / 1e6,
        reduction=ours(path).reduction,
    )


def table(rows: list[Row]) -> str:
    """The figures as a Markdown table."""
    lines = [
        "| file | syntax | size | chest | ours ms | full decode ms | MONAI ms "
        "| MONAI / ours | full / ours | decoded at | peak MB | decoded MB "
        "| peak / decoded |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        monai = f"{row.monai_ms:.0f}" if row.monai_ms is not None else "n/a"
        ratio = f"{row.monai_ms / row.ours_ms:.1f}x" if row.monai_ms else "n/a"
        lines.append(
            f"| {row.name} | {row.syntax} | {row.shape} | "
            f"{'yes' if row.chest else 'no'} | {row.ours_ms:.1f} | "
            f"{row.full_ms:.1f} | {monai} | {ratio} | "
            f"{row.full_ms / row.ours_ms:.1f}x | 1/{row.reduction} | "
            f"{row.peak_mb:.1f} | {row.decoded_mb:.1f} | "
            f"{row.peak_mb / row.decoded_mb:.2f} |"
        )
    return "\n".join(lines)


def main() -> int:
    """Measure every sample and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed rounds")
    args = parser.parse_args()
    if any(os.environ.get(key) != value for key, value in SETTINGS.items()):
        os.environ.update(SETTINGS)  # numpy is loaded: start again with them
        os.execv(sys.executable, [sys.executable, *sys.argv])  # noqa: S606
    warnings.simplefilter("ignore")
    monai, about = monai_chain()
    print(f"imaging benchmark: {SPEC.height}x{SPEC.width}, {about}")
    rows = [measure(path, args.repeat, monai) for path in samples()]
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
