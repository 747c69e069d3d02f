"""Anomaly maps drawn over images (analysis/heatmaps.py): the fixed colour scale, the outline of
the flagged pixels, and clear errors."""
import io

import numpy as np
import pytest
from PIL import Image

from noveltykit.analysis.heatmaps import ANCHORS, colourise, overlay, png_bytes, scaled


def test_the_scale_runs_through_its_anchors_and_clips():
    np.testing.assert_array_equal(colourise(np.array([0.0, 1.0, -3.0, 7.0])),
                                  ANCHORS[[0, -1, 0, -1]].astype(np.uint8))
    mid = colourise(np.array([0.5]))[0]
    np.testing.assert_array_equal(mid, ANCHORS[2].astype(np.uint8))  # 5 anchors: 0.5 is the third
    halfway = colourise(np.array([0.125]))[0]  # halfway between the first two anchors
    np.testing.assert_array_equal(halfway, ((ANCHORS[0] + ANCHORS[1]) / 2).round().astype(np.uint8))


def test_the_threshold_sits_in_the_middle_of_the_scale():
    np.testing.assert_allclose(scaled(np.array([1.0, 3.0, 5.0, 9.0]), threshold=3.0, floor=1.0),
                               [0.0, 0.5, 1.0, 1.0])


def test_an_overlay_keeps_a_quiet_map_on_the_image_and_outlines_what_is_flagged():
    img = np.full((12, 12, 3), 100, np.uint8)
    amap = np.zeros((12, 12))
    amap[4:8, 4:8] = 10.0  # above the threshold of 2
    out = overlay(img, amap, threshold=2.0)
    assert out.shape == (12, 12, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])  # a zero map leaves the pixel as it was
    ring = np.zeros((12, 12), bool)
    ring[4:8, 4:8] = True
    ring[5:7, 5:7] = False
    assert (out[ring] == 255).all() and not (out[5:7, 5:7] == 255).all(axis=-1).any()
    grey = overlay(img[..., 0], amap, threshold=2.0)  # a grey image is drawn in colour too
    np.testing.assert_array_equal(grey, out)


def test_a_map_of_another_size_is_refused():
    with pytest.raises(ValueError, match="differ in size"):
        overlay(np.zeros((8, 8, 3), np.uint8), np.zeros((4, 4)), threshold=1.0)


def test_png_bytes_read_back():
    rgb = (np.arange(48).reshape(4, 4, 3) * 5).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png_bytes(rgb)))), rgb)
