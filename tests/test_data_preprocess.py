"""resize_uint8: the one resize every loader uses."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from noveltykit.data import preprocess, resize_uint8


def test_28_to_32_shape_and_dtype():
    x = np.random.default_rng(0).integers(0, 256, (5, 1, 28, 28), dtype=np.uint8)
    y = resize_uint8(x)
    assert y.shape == (5, 1, 32, 32) and y.dtype == np.uint8


@pytest.mark.parametrize("value", [0, 1, 137, 254, 255])
@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (2, 3, 64, 48), (1, 3, 7, 100)])
def test_constant_image_stays_constant(value, shape):
    y = resize_uint8(np.full(shape, value, dtype=np.uint8))
    assert y.shape == (shape[0], shape[1], 32, 32)
    assert (y == value).all()


def test_noop_at_target_size():
    x = np.zeros((3, 3, 32, 32), dtype=np.uint8)
    assert resize_uint8(x) is x


def test_matches_rounded_bilinear_and_keeps_ramps_monotonic():
    ramp = np.tile(np.linspace(0, 255, 28).round().astype(np.uint8), (28, 1))[None, None]
    y = resize_uint8(ramp)
    ref = F.interpolate(torch.from_numpy(ramp).float(), size=(32, 32), mode="bilinear", align_corners=False,
                        antialias=True).round().clamp(0, 255).to(torch.uint8).numpy()
    np.testing.assert_array_equal(y, ref)
    assert (np.diff(y[0, 0, 0].astype(int)) >= 0).all() and y[0, 0, 0, 0] == 0 and y[0, 0, 0, -1] == 255


def test_downsizing_is_antialiased():
    # 96 -> 32: plain bilinear would sample single pixels and give pure black/white
    checker = (np.indices((96, 96)).sum(0) % 2 * 255).astype(np.uint8)[None, None]
    y = resize_uint8(checker)
    assert np.abs(y.astype(int) - 128).max() <= 2  # averaged to grey


def test_chunking_gives_the_same_result(monkeypatch):
    x = np.random.default_rng(1).integers(0, 256, (10, 3, 20, 24), dtype=np.uint8)
    whole = resize_uint8(x)
    monkeypatch.setattr(preprocess, "CHUNK_PIXELS", 3 * 20 * 24 * 3)  # 3 images per chunk
    np.testing.assert_array_equal(resize_uint8(x), whole)


def test_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        resize_uint8(np.zeros((1, 1, 28, 28), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        resize_uint8(np.zeros((28, 28), dtype=np.uint8))
