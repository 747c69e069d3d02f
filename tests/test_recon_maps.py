"""Anomaly maps of the reconstruction detectors (the autoencoders, the VAE, the ED/EDÊ/EDE-GANs):
the per-pixel squared reconstruction error, averaged over channels, on the images' own grid
(`torch_base.ReconstructionMaps`), smoothed by `map_sigma`; saved and loaded with the model."""
import copy
import json

import numpy as np
import pytest
import torch

from noveltykit import detectors
from noveltykit.detectors.base import CONFIG_FILE
from noveltykit.detectors.maps import MAP_DETECTORS, blur
from noveltykit.detectors.thresholds import quantile_threshold
from noveltykit.detectors.torch_base import PIXEL_MAP_SIGMA

# tiny and fast, as the conformance suite's FAST_PARAMS
GAN_FAST = {"width": 8, "epochs": 10, "batch_size": 8, "preset": "default"}
CONV_FAST = {"epochs": 10, "batch_size": 8, "width": 8, "code": 16}
FAST = {"ae": {"epochs": 10, "batch_size": 8}, "contractive-ae": {"epochs": 10, "batch_size": 8},
        "conv-ae": CONV_FAST, "dae": CONV_FAST, "vae": {**CONV_FAST, "code": 8},
        "ed-gan": GAN_FAST, "edhat-gan": GAN_FAST, "ede-gan": GAN_FAST}
RECON = list(FAST)
SIZE = 32  # the GANs' smallest


def smooth_images(n: int, seed: int) -> np.ndarray:
    """uint8 (n, 3, 32, 32): mid-grey gentle gradients, a little noise; nothing near white."""
    rng = np.random.default_rng(seed)
    g = np.linspace(-1, 1, SIZE)
    waves = np.stack([np.outer(np.sin(2 * g + c), np.cos(1.5 * g - c)) for c in range(3)])
    x = 128 + 40 * waves[None] * rng.uniform(0.5, 1, (n, 3, 1, 1)) + rng.normal(0, 4, (n, 3, SIZE, SIZE))
    return np.clip(x, 0, 255).astype(np.uint8)


def pasted_square(x: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    out = x.copy()
    out[:, :, top:top + side, left:left + side] = 255
    return out


@pytest.fixture(scope="module")
def images():
    """40 to fit, 10 normal validation, 6 to map."""
    x = smooth_images(56, seed=0)
    return x[:40], x[40:50], x[50:]


@pytest.fixture(scope="module")
def _fits():
    return {}


@pytest.fixture
def fitted(name, images, _fits):
    if name not in _fits:
        _fits[name] = detectors.make(name, **FAST[name]).fit(images[0], images[1])
    return _fits[name]


def test_every_reconstruction_detector_gives_maps_and_the_others_none():
    assert set(RECON) <= set(MAP_DETECTORS)
    for name in RECON:
        cls = detectors.detector_class(name)
        assert cls.produces_maps and detectors.make(name).map_sigma == PIXEL_MAP_SIGMA == 1.0
    for name in ("kdgan", "deep-svdd", "gan-disc", "knn", "pca", "selfsup", "certainty"):
        assert not detectors.detector_class(name).produces_maps
        assert "map_sigma" not in detectors.make(name).get_params()
    with pytest.raises(ValueError, match="map_sigma"):
        detectors.make("conv-ae", map_sigma=-1)
    with pytest.raises(ValueError, match="map_sigma"):
        detectors.make("ede-gan", map_sigma=float("nan"))
    assert detectors.make("ede-gan", map_sigma=2, width=8).get_params()["map_sigma"] == 2.0


@pytest.mark.parametrize("name", RECON)
def test_map_shape_dtype_deterministic_and_batch_free(name, fitted, images, monkeypatch):
    test = images[2]
    maps = fitted.anomaly_map(test)
    assert maps.shape == (len(test), SIZE, SIZE) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and (maps >= 0).all()
    np.testing.assert_array_equal(fitted.anomaly_map(test), maps)
    # an image's map does not depend on its batch (up to the float kernels' rounding)
    np.testing.assert_allclose(np.concatenate([fitted.anomaly_map(test[:2]), fitted.anomaly_map(test[2:])]),
                               maps, rtol=1e-5, atol=1e-7)
    monkeypatch.setattr(fitted, "score_batch_size", 4)  # several batches
    np.testing.assert_allclose(fitted.anomaly_map(test), maps, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="16x16"):
        fitted.anomaly_map(test[:, :, :16, :16])
    with pytest.raises(detectors.NotFittedError):
        detectors.make(name, **FAST[name]).anomaly_map(test)


@pytest.mark.parametrize("name", RECON)
@pytest.mark.parametrize("top, left", [(4, 18), (17, 6)])
def test_a_pasted_bright_square_lights_up_the_map_there(name, top, left, fitted, images):
    test, side = images[2], 10
    novel = pasted_square(test, top, left, side)
    inside = np.zeros((SIZE, SIZE), bool)
    inside[top:top + side, left:left + side] = True
    for m in fitted.anomaly_map(novel):
        r, c = np.unravel_index(m.argmax(), m.shape)
        assert inside[r, c], (r, c)
        assert m[inside].mean() > 5 * m[~inside].mean()
        assert m.max() > fitted.pixel_threshold_
    assert fitted.map_floor_ < fitted.pixel_threshold_


@pytest.mark.parametrize("name", ["conv-ae", "ede-gan"])
def test_the_map_is_the_per_pixel_squared_error_of_the_reconstruction(name, fitted, images):
    x = torch.as_tensor(images[2]).float() / 127.5 - 1
    net = fitted.model_ if name == "conv-ae" else fitted.generator_
    net.eval()
    with torch.no_grad():
        out = net(x)
    x_hat = out if name == "conv-ae" else out.x_hat  # the GAN: the decoder's D(E(x))
    by_hand = (x - x_hat).pow(2).mean(1)
    grid = fitted._map(x)
    assert grid.dtype == torch.float32
    torch.testing.assert_close(grid, by_hand, rtol=1e-5, atol=1e-7)
    # the input grid already: sigma 0 is the raw error, sigma 1 its Gaussian blur
    raw = copy.deepcopy(fitted).set_params(map_sigma=0).anomaly_map(images[2])
    np.testing.assert_allclose(raw, by_hand.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(fitted.anomaly_map(images[2]), blur(torch.from_numpy(raw), 1.0).numpy(),
                               rtol=1e-5, atol=1e-7)
    if name == "conv-ae":  # loss="mse": the image score is the raw map's mean
        np.testing.assert_allclose(fitted.decision_function(images[2]), by_hand.flatten(1).mean(1).double(),
                                   rtol=1e-5)


@pytest.mark.parametrize("name", ["ae", "vae", "ed-gan"])
def test_pixel_threshold_is_the_quantile_of_normal_map_maxima(name, fitted, images):
    val = images[1]
    maxima = fitted.anomaly_map(val).reshape(len(val), -1).max(1)
    assert fitted.pixel_threshold_ == pytest.approx(quantile_threshold(maxima, fitted.threshold_quantile))
    assert fitted.map_floor_ == pytest.approx(float(fitted._map(torch.as_tensor(val).float() / 127.5 - 1).median()))


@pytest.mark.parametrize("name", ["dae", "ede-gan"])
def test_save_and_load_keep_the_maps(name, fitted, images, tmp_path):
    test = images[2]
    fitted.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    assert config["params"]["map_sigma"] == 1.0
    assert config["pixel_threshold_"] == fitted.pixel_threshold_ and config["map_floor_"] == fitted.map_floor_
    loaded = detectors.load(tmp_path / "m")
    assert loaded.produces_maps and loaded.map_sigma == 1.0
    assert (loaded.pixel_threshold_, loaded.map_floor_) == (fitted.pixel_threshold_, fitted.map_floor_)
    np.testing.assert_array_equal(loaded.anomaly_map(test), fitted.anomaly_map(test))
    np.testing.assert_array_equal(loaded.decision_function(test), fitted.decision_function(test))
    # a model saved before these detectors gave maps: no map_sigma, no pixel threshold; it loads,
    # maps with the default sigma and says its pixel threshold is unknown
    for key in ("pixel_threshold_", "map_floor_"):
        del config[key]
    del config["params"]["map_sigma"]
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps(config))
    older = detectors.load(tmp_path / "m")
    assert older.map_sigma == PIXEL_MAP_SIGMA and older.pixel_threshold_ is None and older.map_floor_ is None
    np.testing.assert_array_equal(older.anomaly_map(test), fitted.anomaly_map(test))


def test_a_map_sigma_of_its_own_is_saved(images, tmp_path):
    det = detectors.make("ae", epochs=2, batch_size=8, map_sigma=2.5).fit(images[0], images[1])
    det.save(tmp_path / "m")
    loaded = detectors.load(tmp_path / "m")
    assert loaded.map_sigma == 2.5
    np.testing.assert_array_equal(loaded.anomaly_map(images[2]), det.anomaly_map(images[2]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["conv-ae", "ed-gan"])
def test_maps_on_the_gpu_match_the_cpu(name, images, tmp_path):
    from noveltykit.detectors.context import RunContext
    det = detectors.make(name, **FAST[name]).configure(RunContext(device="cuda")).fit(images[0], images[1])
    maps = det.anomaly_map(images[2])  # computed on the GPU, returned on the CPU
    assert next(det.scorer().parameters()).is_cuda
    on_cpu = detectors.load(det.save(tmp_path / "m"))
    np.testing.assert_allclose(on_cpu.anomaly_map(images[2]), maps, rtol=1e-3, atol=1e-5)
