"""The shared training loop on a toy unit: order, resume, NaN guard, selection, early stop, monitor."""
import json
import math

import numpy as np
import pytest
import torch

from noveltykit.train.loop import LoopConfig, epoch_order, train_loop
from noveltykit.train.stabilisers import TrainingDiverged


class LinearUnit:
    """Fit y = w x to targets 2x by SGD; `val_losses` may script the validation loss per epoch."""

    loss_names = ("mse",)

    def __init__(self, lr=0.5, val_losses=None, nan_at_epoch=None):
        torch.manual_seed(0)
        self.model = torch.nn.Linear(1, 1, bias=False)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.val_losses, self.nan_at_epoch, self.epoch, self.seen = val_losses, nan_at_epoch, 0, []

    def begin_epoch(self, epoch):
        self.epoch = epoch
        self.model.train()
        return {}

    def step(self, x):
        self.seen.append(x.clone())
        loss = (self.model(x) - 2 * x).pow(2).mean()
        if self.epoch == self.nan_at_epoch:
            loss = loss * float("nan")
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.detach().reshape(1)

    def sync(self, losses):
        pass

    def end_epoch(self, x_val):
        if self.val_losses is not None:
            return {"val_loss": self.val_losses[self.epoch]}
        with torch.no_grad():
            return {"val_loss": float((self.model(x_val) - 2 * x_val).pow(2).mean())}

    def scoring_module(self):
        return self.model

    def state(self):
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict()}

    def load_state(self, state):
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])


X = torch.linspace(-1, 1, 40).reshape(-1, 1)
XV = torch.linspace(-1, 1, 7).reshape(-1, 1)


def _run(unit, **kw):
    cfg = LoopConfig(**{"epochs": 5, "batch_size": 8, "seed": 3, **kw.pop("cfg", {})})
    return train_loop(unit, cfg, X, XV, config={"toy": 1}, **kw)


def test_learns_and_records_each_epoch():
    unit = LinearUnit()
    result = _run(unit)
    assert [h["epoch"] for h in result.history] == list(range(5)) and result.selected_epoch == 4
    assert result.history[-1]["mse"] < result.history[0]["mse"]
    assert unit.model.weight.item() == pytest.approx(2.0, abs=0.1)
    assert not unit.model.training


def test_batches_follow_seed_and_epoch_only():
    unit = LinearUnit()
    _run(unit)
    first_epoch = torch.cat(unit.seen[:5])
    assert torch.equal(first_epoch, X[epoch_order(3, 40, 0)])
    assert not torch.equal(epoch_order(3, 40, 0), epoch_order(3, 40, 1))


def test_resume_equals_uninterrupted_and_refuses_another_config(tmp_path):
    full = LinearUnit()
    _run(full, checkpoint_dir=tmp_path / "a")
    part = LinearUnit()
    _run(part, cfg={"epochs": 2}, checkpoint_dir=tmp_path / "b")
    resumed = LinearUnit()
    result = train_loop(resumed, LoopConfig(epochs=5, batch_size=8, seed=3), X, XV, config={"toy": 1},
                        checkpoint_dir=tmp_path / "b", resume=True)
    assert torch.equal(resumed.model.weight, full.model.weight)
    assert len(result.history) == 5 and len(resumed.seen) == 3 * 5, "only epochs 2-4 ran"
    assert [r.get("from_checkpoint", False) for r in result.history] == [True, True, False, False, False]
    with pytest.raises(ValueError, match="another configuration"):
        train_loop(LinearUnit(), LoopConfig(epochs=5, batch_size=8, seed=3), X, XV, config={"toy": 2},
                   checkpoint_dir=tmp_path / "b", resume=True)


def test_nan_stops_with_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match="epoch 3") as err:
        _run(LinearUnit(nan_at_epoch=2), checkpoint_dir=tmp_path)
    assert "latest.json" in str(err.value)
    assert json.loads((tmp_path / "latest.json").read_text())["epoch"] == 1


def test_select_val_keeps_the_lowest_validation_epoch():
    unit = LinearUnit(val_losses=[5.0, 1.0, 3.0, 4.0, 2.0])
    weights = []
    result = _run(unit, cfg={"select": "val"},
                  monitor=lambda epoch, m: weights.append(m.weight.detach().clone()) or {})
    assert result.selected_epoch == 1 and torch.equal(unit.model.weight, weights[1])


def test_early_stop_after_patience_epochs_without_improvement(tmp_path):
    vals = [5.0, 4.0, 3.99, 3.98, 1.0, 0.5]
    result = _run(LinearUnit(val_losses=vals), cfg={"epochs": 6, "patience": 2, "min_delta": 0.1},
                  checkpoint_dir=tmp_path)
    # epochs 2 and 3 improve by less than min_delta: two epochs without improvement, stop after 3
    assert result.stopped_early and [h["epoch"] for h in result.history] == [0, 1, 2, 3]
    again = train_loop(LinearUnit(val_losses=vals), LoopConfig(epochs=6, batch_size=8, seed=3, patience=2,
                                                               min_delta=0.1),
                       X, XV, config={"toy": 1}, checkpoint_dir=tmp_path, resume=True)
    assert again.stopped_early and len(again.history) == 4, "a resumed stopped run stays stopped"
    assert not _run(LinearUnit(val_losses=vals), cfg={"epochs": 6}).stopped_early


def test_monitor_adds_diagnostics_but_may_not_shadow_the_record():
    result = _run(LinearUnit(), monitor=lambda epoch, m: {"diagnostic_w": float(m.weight.detach())})
    assert all(math.isfinite(h["diagnostic_w"]) for h in result.history)
    with pytest.raises(ValueError, match="val_loss"):
        _run(LinearUnit(), monitor=lambda epoch, m: {"val_loss": 0.0})


def test_bad_loop_settings():
    for bad in ({"select": "best"}, {"epochs": 0}, {"patience": -1}):
        with pytest.raises(ValueError):
            LoopConfig(**{"epochs": 2, "batch_size": 4, **bad})


def test_moving_average_of_weights_scores_and_resumes(tmp_path):
    from noveltykit.train.ema import EMA

    live = torch.nn.Linear(2, 1)
    avg = EMA(live, 0.5)
    with torch.no_grad():
        before = avg.module.weight.clone()
        live.weight.add_(1.0)
    avg.update()
    assert torch.allclose(avg.module.weight, before + 0.5)  # halfway, at decay 0.5
    with pytest.raises(ValueError, match="decay"):
        EMA(live, 1.0)


def test_a_trained_detector_with_an_ema_scores_with_it(tmp_path):
    from noveltykit import detectors
    from noveltykit.detectors.context import RunContext

    from conftest import make_blobs_dataset

    ds = make_blobs_dataset(n_train=30, channels=1, size=8)
    x = ds.train_x[ds.train_y == 0]
    plain = detectors.make("ae", hidden=8, epochs=3, batch_size=8).fit(x)
    averaged = detectors.make("ae", hidden=8, epochs=3, batch_size=8, ema_decay=0.9).fit(x)
    assert not np.allclose(plain.decision_function(ds.test_x), averaged.decision_function(ds.test_x))
    # a run with an EMA killed in its third epoch resumes to the same weights and scores
    calls = []

    def dies_in_third_epoch(score):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return {}

    with pytest.raises(KeyboardInterrupt):
        detectors.make("ae", hidden=8, epochs=3, batch_size=8, ema_decay=0.9).configure(
            RunContext(checkpoint_dir=tmp_path, monitor=dies_in_third_epoch)).fit(x)
    resumed = detectors.make("ae", hidden=8, epochs=3, batch_size=8, ema_decay=0.9).configure(
        RunContext(checkpoint_dir=tmp_path, resume=True)).fit(x)
    np.testing.assert_array_equal(resumed.decision_function(ds.test_x), averaged.decision_function(ds.test_x))


def test_labels_follow_their_images_through_the_seeded_order():
    class LabelledUnit(LinearUnit):
        def step(self, x, y=None):
            assert y is not None and torch.equal(y, (x[:, 0] * 100).round().long()), "each image with its label"
            self.labels_seen = getattr(self, "labels_seen", 0) + len(y)
            return super().step(x)

    unit = LabelledUnit()
    y = (X[:, 0] * 100).round().long()
    _run(unit, y_train=y)
    assert unit.labels_seen == 5 * len(X)
