"""Anomaly maps (where the novelty is): the contract's `anomaly_map` and pixel threshold, the
upsampling and smoothing, and the two map detectors, patchcore (its coreset and bank search) and
padim (its Gaussians)."""
import copy
import json
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from noveltykit import detectors
from noveltykit.detectors import maps as maps_mod
from noveltykit.detectors import patchcore as patchcore_mod
from noveltykit.detectors.base import CONFIG_FILE
from noveltykit.detectors.maps import MAP_DETECTORS, MapsNotSupported, blur, full_size
from noveltykit.detectors.patchcore import greedy_coreset, nearest_in_bank
from noveltykit.detectors.thresholds import quantile_threshold
from noveltykit.features.patch_maps import PatchMaps
from noveltykit.features.weights import PretrainedWeightsMismatch

from conftest import needs_weights, smooth_colour_images

# the network reads the 64 px images at 96: grids of 12x12 (patchcore) and 24x24 (padim)
MAP_FAST = {"patchcore": {"size": 96}, "padim": {"size": 96, "n_channels": 24}}


@pytest.fixture(scope="module")
def images():
    """64x64 smooth colour images: 30 to fit, 10 normal validation, 8 to score."""
    x = smooth_colour_images(48, 64, seed=1)
    return x[:30], x[30:40], x[40:]


@pytest.fixture(scope="module")
def fitted(images):
    train, val, _ = images
    return {name: detectors.make(name, **params).fit(train, val) for name, params in MAP_FAST.items()}


def pasted_square(x: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    out = x.copy()
    out[:, :, top:top + side, left:left + side] = 255
    return out


# --- upsampling and smoothing -----------------------------------------------------------------------
@pytest.mark.parametrize("sigma", [0.7, 2.0, 4.0])
def test_blur_is_scipys_gaussian_filter_with_nearest_edges(sigma):
    m = torch.rand(2, 23, 31, generator=torch.Generator().manual_seed(0))
    ours = blur(m, sigma).numpy()
    theirs = np.stack([gaussian_filter(a.astype(np.float64), sigma, mode="nearest", truncate=4.0) for a in m.numpy()])
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_full_size_upsamples_then_smooths_and_sigma_0_only_upsamples():
    grid = torch.zeros(1, 4, 4)
    grid[0, 1, 2] = 1.0
    sharp = full_size(grid, (32, 32), 0.0)
    expected = torch.nn.functional.interpolate(grid[:, None], size=(32, 32), mode="bilinear",
                                               align_corners=False)[:, 0].numpy()
    np.testing.assert_array_equal(sharp, expected)
    smooth = full_size(grid, (32, 32), 4.0)
    assert sharp.dtype == smooth.dtype == np.float32 and smooth.shape == (1, 32, 32)
    np.testing.assert_allclose(smooth, blur(torch.from_numpy(sharp), 4.0).numpy())
    assert smooth.max() < sharp.max() and abs(smooth.sum() - sharp.sum()) < 0.1 * sharp.sum()  # spread out, kept
    # the peak stays where the grid cell was: row 1 of 4 -> pixels 8-15, column 2 -> 16-23
    r, c = np.unravel_index(smooth[0].argmax(), (32, 32))
    assert 8 <= r < 16 and 16 <= c < 24
    # a non-square image, and more maps than one chunk
    assert full_size(torch.rand(maps_mod.CHUNK + 3, 4, 4), (20, 36), 1.0).shape == (maps_mod.CHUNK + 3, 20, 36)


def test_map_sigma_must_be_a_number_of_pixels():
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="map_sigma"):
            detectors.make("patchcore", map_sigma=bad)


# --- the contract -----------------------------------------------------------------------------------
def test_a_detector_without_maps_says_so_and_names_those_with_maps(images):
    train, val, test = images
    knn = detectors.make("knn").fit(train, val)
    assert not knn.produces_maps
    with pytest.raises(MapsNotSupported, match="knn: scores whole images and gives no anomaly map; "
                                               "detectors that give maps: ae, contractive-ae, .*, padim, "
                                               "patchcore, vae"):
        knn.anomaly_map(test)
    assert issubclass(MapsNotSupported, ValueError)
    assert not hasattr(knn, "pixel_threshold_")
    with pytest.raises(MapsNotSupported):  # unfitted too: it never will
        detectors.make("pca").anomaly_map(test)


def test_the_message_names_every_built_in_map_detector():
    built_in = [n for n in detectors.available() if detectors.detector_class(n).__module__.startswith("noveltykit.")]
    assert tuple(n for n in built_in if detectors.detector_class(n).produces_maps) == MAP_DETECTORS


@needs_weights
@pytest.mark.parametrize("name", ["patchcore", "padim"])
def test_anomaly_map_at_the_input_size_and_deterministic(name, fitted, images):
    det, test = fitted[name], images[2]
    maps = det.anomaly_map(test)
    assert maps.shape == (len(test), 64, 64) and maps.dtype == np.float32  # the images' size, not the network's 96
    np.testing.assert_array_equal(det.anomaly_map(test), maps)
    np.testing.assert_array_equal(np.concatenate([det.anomaly_map(test[:3]), det.anomaly_map(test[3:])]), maps)
    with pytest.raises(ValueError, match="4x4"):
        det.anomaly_map(test[:, :, :4, :4])
    with pytest.raises(detectors.NotFittedError):
        detectors.make(name, **MAP_FAST[name]).anomaly_map(test)


@needs_weights
@pytest.mark.parametrize("name", ["patchcore", "padim"])
def test_image_score_is_the_largest_raw_patch_score(name, fitted, images):
    det, test = fitted[name], images[2]
    grid = det._map(torch.from_numpy(test))
    assert grid.ndim == 3 and grid.shape[0] == len(test) and grid.shape[1] > 1
    np.testing.assert_array_equal(det.decision_function(test), grid.amax(dim=(1, 2)).double().numpy())


@needs_weights
@pytest.mark.parametrize("name", ["patchcore", "padim"])
def test_sigma_0_is_the_upsampled_grid_and_sigma_smooths_it(name, fitted, images):
    det, test = fitted[name], images[2]
    grid = det._map(torch.from_numpy(test))
    raw = copy.deepcopy(det).set_params(map_sigma=0).anomaly_map(test)  # the same fit, no smoothing
    np.testing.assert_array_equal(raw, full_size(grid, (64, 64), 0.0))
    smooth = det.anomaly_map(test)
    np.testing.assert_allclose(smooth, blur(torch.from_numpy(raw), 4.0).numpy(), rtol=1e-6)
    rough = lambda m: np.abs(np.diff(m, axis=-1)).mean()  # noqa: E731
    assert rough(smooth) < 0.5 * rough(raw)


@needs_weights
@pytest.mark.parametrize("name", ["patchcore", "padim"])
@pytest.mark.parametrize("top, left", [(21, 21), (32, 10)])
def test_a_pasted_bright_square_lights_up_the_map_there(name, top, left, fitted, images):
    det, test, side = fitted[name], images[2], 16
    novel = pasted_square(test, top, left, side)
    assert (det.decision_function(novel) > det.decision_function(test)).all()
    for m in det.anomaly_map(novel):
        r, c = np.unravel_index(m.argmax(), m.shape)
        assert top <= r < top + side and left <= c < left + side, (r, c)
        assert m.max() > det.pixel_threshold_
    # normal images: flagged pixels about as often as a normal image is flagged (not every one)
    assert (det.anomaly_map(test).reshape(len(test), -1).max(1) > det.pixel_threshold_).mean() < 0.5


@needs_weights
@pytest.mark.parametrize("name", ["patchcore", "padim"])
def test_pixel_threshold_is_the_quantile_of_normal_map_maxima_and_is_saved(name, fitted, images, tmp_path):
    det, (_, val, test) = fitted[name], images
    maxima = det.anomaly_map(val).reshape(len(val), -1).max(1)
    assert det.pixel_threshold_ == pytest.approx(quantile_threshold(maxima, det.threshold_quantile))
    det.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    assert config["pixel_threshold_"] == det.pixel_threshold_ and config["threshold_"] == det.threshold_
    assert f"a pixel above {det.pixel_threshold_:.6g} is flagged" in (tmp_path / "m" / "README.md").read_text()
    loaded = detectors.load(tmp_path / "m")
    assert loaded.pixel_threshold_ == det.pixel_threshold_
    # the overlays' floor: the median raw patch score of the normal validation images
    assert loaded.map_floor_ == det.map_floor_ == pytest.approx(float(det._map(torch.as_tensor(val)).median()))
    assert det.map_floor_ < det.pixel_threshold_
    np.testing.assert_array_equal(loaded.anomaly_map(test), det.anomaly_map(test))
    np.testing.assert_array_equal(loaded.decision_function(test), det.decision_function(test))
    # a model file without one still loads and maps: its pixel threshold is unknown
    del config["pixel_threshold_"]
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps(config))
    older = detectors.load(tmp_path / "m")
    assert older.pixel_threshold_ is None
    np.testing.assert_array_equal(older.anomaly_map(test), det.anomaly_map(test))


@needs_weights
def test_other_detectors_save_no_pixel_threshold(images, tmp_path):
    train, val, _ = images
    detectors.make("knn").fit(train, val).save(tmp_path / "m")
    assert "pixel_threshold_" not in json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    assert not hasattr(detectors.load(tmp_path / "m"), "pixel_threshold_")


@needs_weights
@pytest.mark.parametrize("name", ["patchcore", "padim"])
def test_a_model_fitted_on_other_backbone_weights_is_refused(name, fitted, tmp_path):
    fitted[name].save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    config["fitted"]["weights_sha256"] = "0" * 64
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(PretrainedWeightsMismatch, match=f"{name}: the model was fitted on features"):
        detectors.load(tmp_path / "m")


# --- patch features -------------------------------------------------------------------------------
@needs_weights
def test_patch_maps_pool_upsample_and_concatenate(images):
    from noveltykit.features.extractor import FeatureExtractor, load_backbone
    x = images[2][:2]
    ours = PatchMaps(size=64, stages="3+5", pool=3)(x)
    prepared = FeatureExtractor(size=64).prepare(torch.from_numpy(x).float() / 127.5 - 1)
    with torch.no_grad():
        raw = load_backbone("efficientnet-lite0").stage_maps(prepared, (3, 5))
    assert raw[3].shape[1:] == (40, 8, 8) and raw[5].shape[1:] == (112, 4, 4)
    assert ours.shape == (2, 152, 8, 8)
    pooled3 = torch.nn.functional.avg_pool2d(raw[3], 3, 1, 1, count_include_pad=False)
    torch.testing.assert_close(ours[:, :40], pooled3, atol=1e-5, rtol=1e-5)
    # an inner patch is the mean of its 3x3 neighbourhood
    torch.testing.assert_close(ours[:, :40, 3, 4], raw[3][:, :, 2:5, 3:6].mean(dim=(2, 3)), atol=1e-5, rtol=1e-5)
    pooled5 = torch.nn.functional.avg_pool2d(raw[5], 3, 1, 1, count_include_pad=False)
    up5 = torch.nn.functional.interpolate(pooled5, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(ours[:, 40:], up5, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="pool"):
        PatchMaps(pool=2)


# --- PatchCore ------------------------------------------------------------------------------------
def plain_greedy(points: torch.Tensor, first: int, k: int) -> list[int]:
    """The textbook loop: the point farthest from the chosen ones, one pass over all per centre."""
    x = points.double()
    chosen, nearest = [first], (x - x[first]).norm(dim=1)
    for _ in range(1, k):
        i = int(nearest.argmax())
        chosen.append(i)
        nearest = torch.minimum(nearest, (x - x[i]).norm(dim=1))
    return chosen


def test_coreset_picks_k_distinct_points_as_the_plain_greedy_loop_does():
    points = torch.randn(3000, 16, generator=torch.Generator().manual_seed(0))
    picks = greedy_coreset(points, 200, seed=5)
    assert picks.dtype == torch.long and len(picks) == 200 and len(set(picks.tolist())) == 200
    assert picks.tolist() == plain_greedy(points, int(picks[0]), 200)  # the lazy loop is exact
    # the first centre is the seed's: the same seed, the same picks; other seeds start elsewhere
    assert torch.equal(greedy_coreset(points, 200, seed=5), picks)
    assert len({int(greedy_coreset(points, 1, seed=s)[0]) for s in range(8)}) > 4
    with pytest.raises(ValueError, match="coreset of 3001 points from 3000"):
        greedy_coreset(points, 3001)
    assert sorted(greedy_coreset(points[:10], 10).tolist()) == list(range(10))


def test_coreset_covers_every_cluster():
    g = torch.Generator().manual_seed(1)
    centres = torch.randn(12, 200, generator=g) * 50  # 200 dimensions: through the random projection
    sizes = [5, 400, 50, 1000, 3, 80, 200, 7, 600, 30, 90, 10]  # lopsided: a sample would miss some
    labels = torch.repeat_interleave(torch.arange(12), torch.tensor(sizes))
    points = centres[labels] + torch.randn(len(labels), 200, generator=g)
    picks = greedy_coreset(points, 12, seed=0)
    assert sorted(labels[picks].tolist()) == list(range(12))


def test_coreset_memory_is_linear_in_the_points():
    """300,000 points: an N x N float32 matrix would be 360 GB and fail to allocate."""
    points = torch.randn(300_000, 4, generator=torch.Generator().manual_seed(2))
    picks = greedy_coreset(points, 50, seed=0)
    assert len(set(picks.tolist())) == 50


def test_nearest_in_bank_is_the_brute_force_nearest_block_by_block(monkeypatch):
    monkeypatch.setattr(patchcore_mod, "BANK_CHUNK", 64)  # several blocks
    g = torch.Generator().manual_seed(3)
    bank, queries = torch.randn(300, 20, generator=g) + 5, torch.randn(50, 20, generator=g) + 5
    dist, index = nearest_in_bank(queries, bank, bank.pow(2).sum(1))
    full = torch.cdist(queries.double(), bank.double())
    torch.testing.assert_close(dist.double(), full.min(1).values, rtol=1e-6, atol=1e-6)
    assert torch.equal(index, full.argmin(1))
    d0, _ = nearest_in_bank(bank[:5], bank, bank.pow(2).sum(1))  # a bank entry: exactly 0, no cancellation
    assert (d0 == 0).all()


@needs_weights
def test_patchcore_bank_is_the_coreset_of_the_training_patches(images):
    train, val, test = images
    det = detectors.make("patchcore", size=96, coreset_ratio=0.25).fit(train, val)
    patches = torch.cat([det._patches(m) for m in det.patch_maps().chunks(train)])
    assert det.n_patches_ == len(patches) == 30 * 12 * 12 and det.grid_ == (12, 12)
    assert det.bank_.shape == (round(0.25 * len(patches)), 152)
    torch.testing.assert_close(det.bank_, patches[greedy_coreset(patches, len(det.bank_), 0)])
    every = detectors.make("patchcore", size=96, coreset_ratio=1.0).fit(train, val)
    assert torch.equal(every.bank_, patches)
    # a training image scores (nearly) 0 against the whole bank; the coreset's bank scores it higher
    assert every.decision_function(train[:3]).max() < 1e-3 < det.decision_function(train[:3]).min()
    small = detectors.make("patchcore", size=96, feature_dim=32).fit(train, val)
    assert small.bank_.shape[1] == 32
    with pytest.raises(ValueError, match="coreset_ratio"):
        detectors.make("patchcore", coreset_ratio=0)


@needs_weights
def test_patchcore_reweighting(fitted, images):
    plain, (train, val, test) = fitted["patchcore"], images
    det = detectors.make("patchcore", size=96, reweight=True).fit(train, val)
    assert torch.equal(det.bank_, plain.bank_)
    np.testing.assert_array_equal(det.anomaly_map(test), plain.anomaly_map(test))  # the map is not reweighted
    weighted, raw = det.decision_function(test), plain.decision_function(test)
    assert (weighted > 0).all() and (weighted < raw).all()  # a weight in (0, 1)
    # by hand, for the first image (Eq. 7)
    patches = det._patches(det.patch_maps()(test[:1]))
    dist = torch.cdist(patches.double(), det.bank_.double())
    far = int(dist.min(1).values.argmax())
    star = int(dist[far].argmin())
    to_star = torch.cdist(det.bank_[star:star + 1].double(), det.bank_.double())[0]
    around = to_star.argsort()[:patchcore_mod.REWEIGHT_NEIGHBOURS]
    d = dist[far, around].double()
    expected = (1 - math.exp(d[0]) / d.exp().sum()) * dist[far].min()
    assert weighted[0] == pytest.approx(float(expected), rel=1e-4)


# --- PaDiM ---------------------------------------------------------------------------------------------
@needs_weights
def test_padim_is_a_gaussian_per_position(fitted, images):
    det, (train, val, test) = fitted["padim"], images
    assert det.channels_.shape == (24,) and len(set(det.channels_.tolist())) == 24
    assert det.grid_ == (24, 24) and det.inv_cov_.shape == (24 * 24, 24, 24)
    f = det.patch_maps()(train)[:, det.channels_].double().numpy()  # (30, 24, 24, 24)
    g = det.patch_maps()(test[:1])[0, det.channels_].double().numpy()
    for r, c in ((0, 0), (7, 11), (23, 3)):
        at = f[:, :, r, c]
        cov = np.cov(at, rowvar=False) + 0.01 * np.eye(24)
        delta = g[:, r, c] - at.mean(0)
        expected = math.sqrt(delta @ np.linalg.solve(cov, delta))
        assert float(det._map(torch.from_numpy(test[:1]))[0, r, c]) == pytest.approx(expected, rel=1e-3)
    again = detectors.make("padim", **MAP_FAST["padim"]).fit(train, val)
    assert torch.equal(again.channels_, det.channels_)  # seeded
    other = detectors.make("padim", **MAP_FAST["padim"], random_state=1).fit(train, val)
    assert not torch.equal(other.channels_, det.channels_)
    with pytest.raises(ValueError, match="at least 2 training images"):
        detectors.make("padim", size=96).fit(train[:1], val)
    with pytest.raises(ValueError, match="n_channels"):
        detectors.make("padim", n_channels=0)
