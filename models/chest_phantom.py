"""Synthetic frontal chest radiographs with a known lung opacity.

The image branch of the shipped model is trained on these phantoms, not on
patients. A phantom is a 224x224 MONOCHROME2 image in [0, 1]: air outside the
body near 0, soft tissue in the middle, two dark lung fields, a bright
mediastinum, heart and spine, and rib shadows over the lungs. Consolidation
is drawn as smooth bright patches inside the lung fields; its amount is the
phantom's ``lung_opacity``: the mean brightness the patches add over the lung
fields, measured after clipping. Anatomy, exposure and noise vary per phantom
so that the opacity cannot be read off one fixed pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SIZE = 224

FloatImage = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Phantom:
    """One synthetic radiograph and the lung opacity drawn into it."""

    image: FloatImage
    lung_opacity: float


def _grid() -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    axis = np.linspace(-1.0, 1.0, SIZE)
    rows, cols = np.meshgrid(axis, axis, indexing="ij")
    return rows, cols


def _soft_ellipse(
    rows: npt.NDArray[np.float64],
    cols: npt.NDArray[np.float64],
    centre: tuple[float, float],
    radii: tuple[float, float],
    edge: float = 0.04,
) -> npt.NDArray[np.float64]:
    """Returns a mask that is 1 inside the ellipse and fades out at its edge."""
    distance = np.sqrt(
        ((rows - centre[0]) / radii[0]) ** 2 + ((cols - centre[1]) / radii[1]) ** 2
    )
    return 1.0 / (1.0 + np.exp((distance - 1.0) / edge))


def _lung_fields(
    rng: np.random.Generator,
    rows: npt.NDArray[np.float64],
    cols: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    offset = rng.uniform(0.38, 0.44)
    height = rng.uniform(0.58, 0.68)
    width = rng.uniform(0.27, 0.32)
    centre_row = rng.uniform(-0.08, 0.02)
    right = _soft_ellipse(rows, cols, (centre_row, -offset), (height, width))
    left = _soft_ellipse(rows, cols, (centre_row, offset), (height * 0.95, width))
    return np.clip(right + left, 0.0, 1.0)


def _anatomy(
    rng: np.random.Generator,
    rows: npt.NDArray[np.float64],
    cols: npt.NDArray[np.float64],
    lungs: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Draws the chest without consolidation."""
    body = _soft_ellipse(
        rows, cols, (0.1, 0.0), (1.2, rng.uniform(0.78, 0.92)), edge=0.03
    )
    image = 0.04 + body * rng.uniform(0.42, 0.52)
    image -= lungs * rng.uniform(0.26, 0.32)

    ribs = 0.5 + 0.5 * np.cos(2.0 * np.pi * (rows * 5.5 + 1.4 * cols**2))
    image += lungs * ribs**4 * rng.uniform(0.05, 0.09)

    heart = _soft_ellipse(
        rows, cols, (0.38, rng.uniform(0.1, 0.16)), (0.3, rng.uniform(0.3, 0.36))
    )
    spine = _soft_ellipse(rows, cols, (0.0, 0.0), (1.4, 0.09), edge=0.15)
    image = np.maximum(image, heart * rng.uniform(0.58, 0.66))
    image = np.maximum(image, spine * rng.uniform(0.68, 0.76))

    for side in (-1.0, 1.0):
        clavicle = np.exp(
            -(((rows + 0.62 - 0.25 * (cols * side - 0.3) ** 2) / 0.03) ** 2)
        ) * (np.abs(cols) < 0.7)
        image += clavicle * 0.15
    return image


def _consolidation(
    rng: np.random.Generator,
    rows: npt.NDArray[np.float64],
    cols: npt.NDArray[np.float64],
    lungs: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """Draws smooth patches, denser in the lower and outer lung zones."""
    field = np.zeros_like(rows)
    for _ in range(int(rng.integers(2, 9))):
        centre = (rng.uniform(-0.4, 0.45), rng.choice([-1, 1]) * rng.uniform(0.2, 0.6))
        sigma = rng.uniform(0.1, 0.25)
        field += np.exp(
            -((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma**2)
        )
    return field * lungs


def render(rng: np.random.Generator, lung_opacity: float) -> Phantom:
    """Renders one phantom whose lung opacity is close to ``lung_opacity``.

    The patches are scaled to the requested opacity before clipping; the
    returned ``lung_opacity`` is measured after clipping, so it is the truth.
    """
    rows, cols = _grid()
    lungs = _lung_fields(rng, rows, cols)
    clear = _anatomy(rng, rows, cols, lungs)
    noise = rng.normal(0.0, rng.uniform(0.01, 0.025), size=rows.shape)
    gain = rng.uniform(0.92, 1.08)

    patches = _consolidation(rng, rows, cols, lungs)
    lung_weight = lungs.sum()
    if lung_opacity > 0 and patches.sum() > 0:
        patches *= lung_opacity * lung_weight / patches.sum()
    else:
        patches[:] = 0.0

    clear_image = np.clip((clear + noise) * gain, 0.0, 1.0)
    image = np.clip((clear + patches + noise) * gain, 0.0, 1.0)
    measured = float(((image - clear_image) * lungs).sum() / lung_weight)
    return Phantom(image=image.astype(np.float32), lung_opacity=measured)


def sample_opacity(rng: np.random.Generator) -> float:
    """Draws a lung opacity from the training mix: 35 % clear, else U(0, 0.25)."""
    if rng.random() < 0.35:
        return 0.0
    return float(rng.uniform(0.0, 0.25))
