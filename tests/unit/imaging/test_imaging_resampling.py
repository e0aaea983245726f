"""Area averaging and the letterbox, against hand-computed values."""

import numpy as np
from cxrwatch.core.manifest import ImageSpec
from cxrwatch.imaging.resampling import Letterbox, area_weights, resample


def test_weights_of_seven_inputs_onto_three_outputs() -> None:
    """Each output covers 7/3 inputs: 1, 1, 1/3 | 2/3, 1, 2/3 | 1/3, 1, 1."""
    third = 1 / 3
    expected = np.array(
        [
            [1, 1, third, 0, 0, 0, 0],
            [0, 0, 2 * third, 1, 2 * third, 0, 0],
            [0, 0, 0, 0, third, 1, 1],
        ]
    ) / (7 / 3)

    np.testing.assert_allclose(area_weights(3, 7), expected, atol=1e-6)


def test_equal_sizes_are_an_exact_copy() -> None:
    np.testing.assert_array_equal(area_weights(16, 16), np.eye(16, dtype=np.float32))


def test_a_partial_last_pixel_weighs_what_it_covers() -> None:
    """5 pixels whose image ends half-way into the fifth, onto 3 outputs."""
    weights = area_weights(3, 5, extent=4.5)

    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    assert weights[2, 4] == np.float32(0.5 / 1.5)


def test_block_means() -> None:
    image = np.arange(16, dtype=np.uint16).reshape(4, 4)
    box = Letterbox.fit(4, 4, ImageSpec(height=2, width=2))

    resized = resample(image, lambda strip: strip.astype(np.float32), box)

    # (0 + 1 + 4 + 5) / 4 = 2.5, (2 + 3 + 6 + 7) / 4 = 4.5, ...
    np.testing.assert_allclose(resized, [[2.5, 4.5], [10.5, 12.5]])


def test_rg1_letterbox() -> None:
    """1955 x 1841 into 224 x 224: 224 / 1955 * 1841 = 210.9 -> 211 columns."""
    box = Letterbox.fit(1955, 1841, ImageSpec(height=224, width=224))

    assert (box.fitted_height, box.fitted_width, box.top, box.left) == (224, 211, 0, 6)


def test_physical_aspect_is_kept() -> None:
    """100 x 100 pixels of 2 mm x 1 mm are twice as tall as wide."""
    box = Letterbox.fit(100, 100, ImageSpec(height=50, width=50), pixel_aspect=2.0)

    assert (box.fitted_height, box.fitted_width, box.left) == (50, 25, 12)
