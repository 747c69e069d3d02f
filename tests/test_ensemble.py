"""The `ensemble` detector: its members spec, its standardisations against hand-computed values,
save/load, the errors it names, and what it tells the runner (docs/ensemble.md)."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.base import clone

from noveltykit import detectors
from noveltykit.analysis.metrics import auroc
from noveltykit.data.images import ImageDataset
from noveltykit.detectors import registry
from noveltykit.detectors.base import Detector
from noveltykit.detectors.context import RunContext
from noveltykit.detectors.ensemble import (EnsembleDetector, parse_members, parse_weights, rank_scores,
                                           render_members, zscore_stats)
from noveltykit.detectors.specs import MethodSpec
from noveltykit.experiments.bench import run_cell

from conftest import make_blobs_dataset


def quiet_fit(det, *args, **kw):
    """Fit without the few-validation-images warning (these tests' validation sets are small)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*normal validation images score above the threshold")
        return det.fit(*args, **kw)


@pytest.fixture(scope="module")
def blobs():
    ds = make_blobs_dataset(n_train=60, n_test=30, channels=1, size=16)
    normal = ds.train_x[ds.train_y == 0]
    return normal[:45], normal[45:], ds.test_x, ds.test_y != 0


# --- the members spec --------------------------------------------------------------------------------
def test_members_parse_and_render():
    text = "knn/k=10/aggregate=max+pca/n_components=0.5+kde"
    specs = parse_members(text)
    assert specs == [("knn", {"k": 10, "aggregate": "max"}), ("pca", {"n_components": 0.5}), ("kde", {})]
    assert render_members(specs) == text
    # a `+` that does not start a detector's name belongs to the value before it
    assert parse_members("feat-knn/stages=5+last+pca") == [("feat-knn", {"stages": "5+last"}), ("pca", {})]
    assert parse_members("kde/bandwidth=1e+20+knn") == [("kde", {"bandwidth": 1e20}), ("knn", {})]
    assert parse_members("knn/k=none+pca") == [("knn", {"k": None}), ("pca", {})]
    # Python's own forms give the same canonical text
    det = detectors.make("ensemble", members=["knn/k=3", ("pca", {"n_components": 0.5})])
    assert det.members == "knn/k=3+pca/n_components=0.5"


def test_members_from_a_command_line_method_spec_round_trip(tmp_path):
    spec = MethodSpec.parse("ensemble:members=knn/k=3/aggregate=max+pca/n_components=0.5,combine=rank,weights=2+1")
    det = detectors.make(spec.detector, **dict(spec.params))
    params = det.get_params()
    assert params["members"] == "knn/k=3/aggregate=max+pca/n_components=0.5"
    assert params["combine"] == "rank" and params["weights"] == [2.0, 1.0]
    assert det.member_specs() == [("knn", {"random_state": 0, "k": 3, "aggregate": "max"}),
                                  ("pca", {"random_state": 0, "n_components": 0.5})]
    again = detectors.make("ensemble", **json.loads(json.dumps(params)))  # as config.json holds them
    assert again.get_params() == params and clone(det).get_params() == params
    det.set_params(members="kde+pca", weights=[1, 3])
    assert det.members == "kde+pca" and det.weights == [1, 3]
    np.testing.assert_allclose(det.member_weights(), [0.25, 0.75])


@pytest.mark.parametrize("params, match", [
    ({"members": "knn+nope"}, "unknown detector 'nope'"),
    ({"members": "knn"}, "at least 2 members"),
    ({"members": "knn+ensemble"}, "cannot be a member of an ensemble"),
    ({"members": "knn+pca", "weights": [1, 2, 3]}, "3 weight.* for 2 members"),
    ({"members": "knn+pca", "weights": "1+2+3"}, "3 weight.* for 2 members"),
    ({"members": "knn+pca", "weights": [1, -1]}, "negative weight"),
    ({"members": "knn+pca", "weights": [0, 0]}, "at least one weight must be positive"),
    ({"members": "knn+pca", "weights": "1+x"}, "not a number"),
    ({"members": "knn+pca", "weights": [1, float("nan")]}, "not a finite number"),
    ({"members": "knn+pca", "combine": "max"}, "combine must be one of"),
    ({"members": "knn/k=0+pca"}, "k must be"),
    ({"members": "knn/k+pca"}, "not key=value"),
    ({"members": "knn/k=1/k=2+pca"}, "gives 'k' twice"),
    ({"members": "knn++pca"}, "an empty member"),
    ({"members": None}, "expected member detectors"),
    ({"members": "knn/z=a/b+pca"}, "not key=value"),
    ({"members": "knn/k=3+nope"}, "read knn's k=3\\+nope as one value.*misspelt member name"),
    ({"members": "knn/k=3+nope+pca"}, "invalid literal.*misspelt member name"),
])
def test_errors_name_the_problem(params, match):
    with pytest.raises(ValueError, match=match):
        detectors.make("ensemble", **params)


def test_a_value_that_cannot_be_written_is_refused():
    with pytest.raises(ValueError, match="cannot be written"):
        detectors.make("ensemble", members=[("knn", {"aggregate": "a/b"}), "pca"])


# --- the standardisations, by hand ---------------------------------------------------------------------
def test_rank_scores_by_hand():
    val = np.array([4.0, 2.0, 1.0, 2.0])  # sorted 1, 2, 2, 4: places 0, 1/3, 2/3, 1; the tied 2s share 1/2
    scores = np.array([0.0, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(rank_scores(scores, val), [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0])
    # constant validation scores: 0 below, 0.5 at, 1 above
    np.testing.assert_allclose(rank_scores(np.array([2.0, 3.0, 4.0]), np.full(5, 3.0)), [0.0, 0.5, 1.0])
    # tied extremes: their mid-rank at them, saturated beyond
    np.testing.assert_allclose(rank_scores(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 3.0, 3.0])),
                               [0.0, 1 / 6, 0.5, 5 / 6])


def test_zscore_stats_by_hand():
    mean, std, constant = zscore_stats(np.array([1.0, 2.0, 3.0, 4.0]))
    assert (mean, std, constant) == (2.5, pytest.approx(math.sqrt(1.25)), False)
    mean, std, constant = zscore_stats(np.full(4, 1000.0))
    assert mean == 1000.0 and std == pytest.approx(1e-6) and constant


@pytest.fixture
def stub():
    """A registered detector that scores an image by its mean pixel times `scale` plus `offset`
    (removed from the registry after the test)."""

    class MeanPixel(Detector):
        """Mean pixel, scaled and shifted. Ignores `y`."""
        name = "test-mean-pixel"

        def __init__(self, scale: float = 1.0, offset: float = 0.0, **base):
            super().__init__(**base)
            self.scale, self.offset = scale, offset

        def _fit(self, x, x_val, y=None):
            pass

        def _score(self, x):
            return (x.double().mean((1, 2, 3)) * self.scale + self.offset).numpy()

        def _state(self):
            return {}

        def _load_state(self, tensors, info):
            pass

    detectors.register(MeanPixel)
    yield MeanPixel.name
    registry._REGISTRY.pop(MeanPixel.name)


def constant_images(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(-1, 1, 4, 4).contiguous()


def test_zscore_and_rank_ensembles_by_hand(stub):
    train = constant_images([0.0, 0.1, -0.1])
    val = constant_images([-0.5, 0.0, 0.5])  # mean 0, population std sqrt(1/6)
    test = constant_images([1.0, 0.25, -0.75])
    members = f"{stub}/scale=2/offset=10+{stub}/scale=-1"  # the second scores novelty backwards
    det = quiet_fit(detectors.make("ensemble", members=members, weights=[3, 1]), train, val)
    for stats in det.standardisation_:
        assert stats["mean"] == pytest.approx(10.0 if stats is det.standardisation_[0] else 0.0)
    assert det.standardisation_[0]["std"] == pytest.approx(2 / math.sqrt(6))
    assert det.standardisation_[1]["std"] == pytest.approx(1 / math.sqrt(6))
    # z of member 0 is v * sqrt(6), of member 1 -v * sqrt(6): 0.75 z0 + 0.25 z1 = 0.5 v sqrt(6)
    np.testing.assert_allclose(det.decision_function(test), 0.5 * math.sqrt(6) * np.array([1.0, 0.25, -0.75]))
    np.testing.assert_allclose(det.member_scores(test)[1], -math.sqrt(6) * np.array([1.0, 0.25, -0.75]))
    # the threshold is the base class's: the 0.95 quantile of the ensemble's validation scores
    assert det.threshold_ == pytest.approx(np.quantile(0.5 * math.sqrt(6) * np.array([-0.5, 0, 0.5]), 0.95))

    det = quiet_fit(detectors.make("ensemble", members=members, weights="3+1", combine="rank"), train, val)
    # member 0 ranks v among (-0.5, 0, 0.5) at places (0, .5, 1); member 1 ranks -v the same way
    # v = 1: 0.75 * 1 + 0.25 * 0;  v = 0.25: 0.75 * 0.75 + 0.25 * 0.25;  v = -0.75: 0.75 * 0 + 0.25 * 1
    np.testing.assert_allclose(det.decision_function(test), [0.75, 0.625, 0.25])


def test_constant_member_warns_and_floors_its_std(stub):
    train, val = constant_images([0.0, 0.1]), constant_images([-0.5, 0.0, 0.5])
    det = detectors.make("ensemble", members=f"{stub}/scale=0/offset=3+{stub}")
    with pytest.warns(UserWarning, match=r"member 0 \(test-mean-pixel\) gives every validation image the same score"):
        quiet_fit(det, train, val)
    assert det.standardisation_[0] == {"mean": 3.0, "std": pytest.approx(3e-9), "constant": True}
    assert np.isfinite(det.decision_function(val)).all()
    det = detectors.make("ensemble", members=f"{stub}/scale=0+{stub}", combine="rank")
    with pytest.warns(UserWarning, match="its rank is 0 below that score, 0.5 at it and 1 above"):
        quiet_fit(det, train, val)
    np.testing.assert_allclose(det.member_scores(val)[0], 0.5)


# --- fit, score, save, load ---------------------------------------------------------------------------
def test_members_are_fitted_on_x_with_x_val(blobs):
    train, val, test, _ = blobs
    det = quiet_fit(detectors.make("ensemble", members="knn/k=3+pca", random_state=7), train, val)
    for member, alone in zip(det.members_, [detectors.make("knn", k=3, random_state=7), detectors.make("pca", random_state=7)]):
        quiet_fit(alone, train, val)
        assert member.random_state == 7 and member.training_["n_train"] == len(train)
        assert member.threshold_ == alone.threshold_  # its own threshold, on the normal validation set
        np.testing.assert_array_equal(member.validation_scores_, np.sort(alone.decision_function(val)))
        np.testing.assert_array_equal(member.decision_function(test), alone.decision_function(test))
    # the ensemble's score is the equal-weight mean of the members' z-scores on their validation scores
    z = [(m.decision_function(test) - m.validation_scores_.mean()) / m.validation_scores_.std() for m in det.members_]
    np.testing.assert_allclose(det.decision_function(test), (z[0] + z[1]) / 2, rtol=1e-12)
    assert det.threshold_ == pytest.approx(np.quantile(det.decision_function(val), 0.95))


@pytest.mark.parametrize("params", [{"members": "knn+pca"}, {"members": "kde+pca/n_components=5", "combine": "rank",
                                                                    "weights": [1, 2]}])
def test_save_load_score_equal(blobs, tmp_path, params):
    train, val, test, _ = blobs
    det = quiet_fit(detectors.make("ensemble", **params), train, val)
    det.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["README.md", "config.json", "weights.safetensors"]
    tensors = load_file(tmp_path / "m" / "weights.safetensors")
    assert tensors and all(k.startswith(("m0.", "m1.")) for k in tensors)
    fitted = json.loads((tmp_path / "m" / "config.json").read_text())["fitted"]
    assert [m["detector"] for m in fitted["members"]] == [n for n, _ in parse_members(det.members)]
    loaded = detectors.load(tmp_path / "m")
    assert loaded.get_params() == det.get_params() and loaded.threshold_ == det.threshold_
    assert loaded.standardisation_ == det.standardisation_
    for a, b in zip(loaded.members_, det.members_):
        assert a.get_params() == b.get_params() and a.threshold_ == b.threshold_
        np.testing.assert_array_equal(a.validation_scores_, b.validation_scores_)
    np.testing.assert_array_equal(loaded.decision_function(test), det.decision_function(test))
    np.testing.assert_array_equal(loaded.predict(test), det.predict(test))


def test_a_saved_model_missing_a_member_tensor_names_it(blobs, tmp_path):
    from safetensors.torch import save_file
    train, val, _, _ = blobs
    det = quiet_fit(detectors.make("ensemble", members="knn+pca"), train, val)
    det.save(tmp_path / "m")
    path = tmp_path / "m" / "weights.safetensors"
    tensors = {k: v for k, v in load_file(path).items() if k != "m1.components"}
    save_file(tensors, path)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config.pop("weights_sha256")
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(detectors.ModelFileError, match="m1.components"):
        detectors.load(tmp_path / "m")


def _hard_blobs(seed: int = 0) -> ImageDataset:
    """Blobs whose classes overlap: templates near one another, much noise, so no detector is perfect."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(60, 195, size=(1, 1, 16, 16))
    templates = base + rng.normal(0, 8, size=(3, 1, 16, 16))

    def draw(n):
        y = np.repeat(np.arange(3), n)
        return np.clip(np.rint(templates[y] + rng.normal(0, 30, size=(len(y), 1, 16, 16))), 0, 255).astype(np.uint8), y

    (train_x, train_y), (test_x, test_y) = draw(120), draw(60)
    return ImageDataset(name="hard-blobs", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                        class_names=["a", "b", "c"], source="synthetic")


@pytest.mark.parametrize("combine", ["zscore", "rank"])
def test_ranks_an_easy_task_at_least_as_well_as_the_worse_member(combine):
    ds = _hard_blobs()
    normal = ds.train_x[ds.train_y == 0]
    train, val, novel = normal[:80], normal[80:], ds.test_y != 0
    det = quiet_fit(detectors.make("ensemble", members="knn+pca/n_components=10", combine=combine), train, val)
    members = [auroc(novel, m.decision_function(ds.test_x)) for m in det.members_]
    ours = auroc(novel, det.decision_function(ds.test_x))
    assert 0.6 < min(members) < 0.999, f"the task must not be trivial: {members}"
    assert ours >= min(members), (ours, members)


def test_batching_moves_a_float32_member_by_a_small_part_of_its_spread():
    """knn computes distances in float32: its scores move by about 1e-5 with the batching, which
    z-scoring divides by the member's validation spread (tiny on these blobs). Bounded here in
    standard deviations; the default members (pca+kde, float64) do not move at all
    (tests/test_conformance.py)."""
    ds = make_blobs_dataset(n_train=60, n_test=30, channels=3, size=32)
    normal = ds.train_x[ds.train_y == 0]
    det = quiet_fit(detectors.make("ensemble", members="knn+pca"), normal[:50], normal[50:])
    whole = det.decision_function(ds.test_x)
    parts = np.concatenate([det.decision_function(ds.test_x[i:i + 7]) for i in range(0, len(ds.test_x), 7)])
    assert np.abs(parts - whole).max() < 1e-2


# --- what the runner reads -----------------------------------------------------------------------------
def test_run_needs_and_labels_are_the_members():
    assert EnsembleDetector.run_needs == frozenset() and EnsembleDetector.uses_labels is False
    assert detectors.make("ensemble").run_needs == frozenset() and detectors.make("ensemble").uses_labels is False
    det = detectors.make("ensemble", members="kdgan+knn+certainty")
    assert det.run_needs == frozenset({"teacher_cache"}) and det.uses_labels is True
    assert type(det).run_needs == frozenset() and type(det).trains_network is False  # class defaults


def test_labels_go_to_the_members_that_use_them():
    ds = make_blobs_dataset(n_train=40, n_test=20, n_classes=3, channels=1, size=16)
    keep = ds.train_y < 2
    x, y = ds.train_x[keep], ds.train_y[keep]
    det = detectors.make("ensemble", members="certainty/epochs=1/batch_size=16+pca")
    with pytest.raises(ValueError, match="label"):
        quiet_fit(det, x[:60], x[60:])
    quiet_fit(det, x[:60], x[60:], y=y[:60])
    assert det.members_[0].classes_ is not None and np.isfinite(det.decision_function(ds.test_x)).all()


def test_configure_reaches_every_member_with_its_own_checkpoints(blobs, tmp_path):
    train, val, _, _ = blobs
    det = quiet_fit(detectors.make("ensemble", members="knn+pca"), train, val)
    det.configure(RunContext(checkpoint_dir=tmp_path, progress=True))
    assert [m.context.checkpoint_dir for m in det.members_] == [tmp_path / "member0-knn", tmp_path / "member1-pca"]
    assert all(m.context.progress for m in det.members_)
    refit = quiet_fit(det, train, val)  # members made by a fit get the context too
    assert refit.members_[1].context.checkpoint_dir == tmp_path / "member1-pca"


def test_a_benchmark_cell_records_each_member(tmp_path):
    ds = make_blobs_dataset(n_train=40, n_test=20, channels=1, size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record, is_novel, scores, _ = run_cell(ds, "one-vs-rest", 0, 0, MethodSpec.parse("ensemble:members=knn+pca"), 0.25)
        alone, *_ = run_cell(ds, "one-vs-rest", 0, 0, MethodSpec.parse("knn"), 0.25)
    assert record["params"]["members"] == "knn+pca" and record["method"] == "ensemble:members=knn+pca"
    assert record["member0-knn_auroc"] == alone["auroc"]
    assert record["companions"] == ["member0-knn", "member1-pca"]  # what `report --companions` reads
    assert [m["detector"] for m in record["member_fits"]] == ["knn", "pca"]
    json.dumps(record)


def test_weights_parse():
    assert parse_weights(None) is None and parse_weights("2+1") == [2.0, 1.0] and parse_weights((1, 0)) == [1.0, 0.0]
