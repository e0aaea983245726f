"""Display values to the model's input size: area averaging and a letterbox.

* **Aspect** is kept: the image is scaled to fit inside height x width (in
  physical proportions, from the pixel spacing or aspect ratio when known) and
  centred; the margins are the background, 0.0, which after the grayscale
  pipeline is black (air). Stretching would distort the cardiothoracic
  proportions the model reads.
* **Area averaging**: each output pixel is the mean of the input area it
  covers, fractional pixels weighted by overlap. It is a box filter, so a
  downscale does not alias, and equal sizes are an exact copy.
* **Separable, in strips**: the weights are two small matrices; rows are
  transformed (grayscale pipeline) and reduced a strip at a time, so the
  full-size float image never exists. Peak memory stays near the decoded
  image itself.
* A decoder that already shrank the image by ``2**r`` (reduced-resolution
  JPEG 2000, DCT-scaled JPEG) passes the exact extent of the original in
  reduced pixels, so its last partial row and column weigh what they cover.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cxrwatch.core.manifest import ImageSpec

STRIP_ROWS = 128
BACKGROUND = 0.0


@dataclass(frozen=True)
class Letterbox:
    """Where the scaled image sits on the model's canvas."""

    height: int
    width: int
    top: int
    left: int
    fitted_height: int
    fitted_width: int

    @classmethod
    def fit(
        cls, rows: int, columns: int, spec: ImageSpec, pixel_aspect: float = 1.0
    ) -> "Letterbox":
        """Fit ``rows`` x ``columns`` pixels, each ``pixel_aspect`` tall per wide."""
        physical_height = rows * pixel_aspect
        scale = min(spec.height / physical_height, spec.width / columns)
        fitted_height = min(spec.height, max(1, round(physical_height * scale)))
        fitted_width = min(spec.width, max(1, round(columns * scale)))
        return cls(
            height=spec.height,
            width=spec.width,
            top=(spec.height - fitted_height) // 2,
            left=(spec.width - fitted_width) // 2,
            fitted_height=fitted_height,
            fitted_width=fitted_width,
        )


def area_weights(outputs: int, inputs: int, extent: float | None = None) -> np.ndarray:
    """Weights (outputs x inputs) of an area-averaging resize along one axis.

    Input pixel ``j`` covers ``[j, j + 1)`` clipped to ``[0, extent)``; output
    ``i`` covers an equal share of ``[0, extent)``. Every row sums to 1.
    """
    span = float(inputs if extent is None else extent)
    edges = np.arange(outputs + 1, dtype=np.float64) * (span / outputs)
    low, high = edges[:-1, None], edges[1:, None]
    # Only the few inputs under each output can overlap it: work on that band.
    band = int(np.ceil(span / outputs)) + 2
    starts = np.floor(low) + np.arange(band, dtype=np.float64)[None, :]
    ends = np.minimum(starts + 1.0, span)
    overlap = np.clip(np.minimum(high, ends) - np.maximum(low, starts), 0.0, None)
    weights = np.zeros((outputs, inputs), dtype=np.float32)
    inside = starts < inputs
    rows = np.broadcast_to(np.arange(outputs)[:, None], starts.shape)
    weights[rows[inside], starts[inside].astype(np.intp)] = (overlap / (high - low))[
        inside
    ]
    return weights


def resample(
    stored: np.ndarray,
    transform: Callable[[np.ndarray], np.ndarray],
    box: Letterbox,
    extent: tuple[float, float] | None = None,
) -> np.ndarray:
    """Transform ``stored`` strip by strip and area-average it onto the canvas.

    ``extent`` is the original image's size in ``stored``'s pixels (rows,
    columns) when a decoder reduced it; by default the array's own shape.
    """
    rows, columns = stored.shape
    extent_rows, extent_columns = extent or (float(rows), float(columns))
    down = area_weights(box.fitted_height, rows, extent_rows)
    across = area_weights(box.fitted_width, columns, extent_columns)
    reduced = np.zeros((box.fitted_height, columns), dtype=np.float32)
    for start in range(0, rows, STRIP_ROWS):
        stop = min(rows, start + STRIP_ROWS)
        block = down[:, start:stop]
        touched = np.flatnonzero(block.any(axis=1))
        if touched.size == 0:
            continue
        first, last = int(touched[0]), int(touched[-1]) + 1
        reduced[first:last] += block[first:last] @ transform(stored[start:stop])
    fitted = reduced @ across.T
    canvas = np.full((box.height, box.width), BACKGROUND, dtype=np.float32)
    canvas[
        box.top : box.top + box.fitted_height,
        box.left : box.left + box.fitted_width,
    ] = fitted
    return canvas
