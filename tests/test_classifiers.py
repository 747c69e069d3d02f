"""The classifier families' cores: certainty and MC dropout, the transformation sets and the
self-supervised scores, the Bayes factor, against hand computations."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from noveltykit import detectors
from noveltykit.data.geometric import SETS, apply_each, transformation_set
from noveltykit.detectors import bayes_factor as bf
from noveltykit.detectors.certainty import certainty
from noveltykit.detectors.selfsup import dirichlet_mle
from noveltykit.nets.dropout import SampledDropout, sample_networks
from noveltykit.nets.wrn import WideResNet

from conftest import make_blobs_dataset


# --- certainty -----------------------------------------------------------------------------------
def test_certainty_hand_values():
    p = torch.tensor([[0.25, 0.25, 0.25, 0.25], [1.0, 0, 0, 0], [0.5, 0.5, 0, 0]])
    np.testing.assert_allclose(certainty(p).numpy(), [0.0, 1.0, 0.5], atol=1e-6)  # H = log 2 / log 4
    q = torch.tensor([[0.9, 0.1]])
    hand = 1 - (-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2))
    assert certainty(q).item() == pytest.approx(hand, abs=1e-6)


def _two_class_blobs():
    ds = make_blobs_dataset(n_train=30, n_test=10, channels=1, size=32)
    two = ds.train_y < 2
    return ds, ds.train_x[two], ds.train_y[two]


def test_certainty_refuses_a_single_class_with_the_protocols_it_serves():
    ds, x, y = _two_class_blobs()
    for labels in (None, np.zeros(len(x), np.int64)):
        with pytest.raises(ValueError, match="leave-one-out.*folder dataset"):
            detectors.make("certainty", epochs=1).fit(x, y=labels)


def test_mc_dropout_differs_from_one_pass_is_seeded_and_batch_free():
    ds, x, y = _two_class_blobs()
    kw = dict(epochs=3, batch_size=8, dropout=0.5)
    one = detectors.make("certainty", **kw).fit(x, y=y)
    mc = detectors.make("certainty", **kw, mc_samples=8).fit(x, y=y)
    a, b = one.decision_function(ds.test_x), mc.decision_function(ds.test_x)
    assert not np.allclose(a, b), "the same training, scored by 8 sampled networks"
    np.testing.assert_array_equal(mc.decision_function(ds.test_x), b)
    np.testing.assert_allclose(np.concatenate([mc.decision_function(ds.test_x[i:i + 3])
                                               for i in range(0, len(ds.test_x), 3)]), b, rtol=1e-5, atol=1e-7)
    other = detectors.make("certainty", **kw, mc_samples=8, random_state=1).fit(x, y=y)
    assert not np.allclose(other.decision_function(ds.test_x), b)
    with pytest.raises(ValueError, match="dropout"):
        detectors.make("certainty", mc_samples=4, dropout=0.0)


def test_sampled_dropout_drops_the_same_units_of_every_image():
    layer = SampledDropout(0.5).eval()
    x = torch.ones(3, 4, 5)
    assert torch.equal(layer(x), x), "no seed: the identity"
    net = torch.nn.Sequential(layer)
    assert sample_networks(net, 7) == 1
    y = layer(x)
    assert torch.equal(y[0], y[1]) and set(y.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(layer(x), y), "the same seed, the same network"
    sample_networks(net, None)
    assert torch.equal(layer(x), x)


def test_allconv_option_trains():
    ds, x, y = _two_class_blobs()
    det = detectors.make("certainty", arch="allconv", width=4, epochs=1, batch_size=8).fit(x, y=y)
    assert np.isfinite(det.decision_function(ds.test_x)).all()


# --- transformation sets ---------------------------------------------------------------------------
def _by_hand(img: np.ndarray, t) -> np.ndarray:
    """One (C, H, W) image: mirror, shift with a mirrored border (numpy's 'reflect', the edge
    pixel not repeated), rotate counter-clockwise."""
    out = img[:, :, ::-1] if t.flip else img
    h, w = out.shape[1:]
    pad = np.pad(out, ((0, 0), (abs(t.dy), abs(t.dy)), (abs(t.dx), abs(t.dx))), mode="reflect")
    out = pad[:, abs(t.dy) - t.dy:abs(t.dy) - t.dy + h, abs(t.dx) - t.dx:abs(t.dx) - t.dx + w]
    return np.rot90(out, t.k, axes=(1, 2))


@pytest.mark.parametrize("name", SETS)
def test_each_transformation_as_specified_and_inverted(name):
    ts = transformation_set(name, 32)
    sizes = {"rot4": 4, "rot4-flip": 8, "geom72": 72, "rot4-trans": 36}
    assert len(ts) == sizes[name] == len(set(ts.transforms)) == len(ts.labels)
    x = torch.rand(2, 3, 32, 32)
    for t in ts.transforms:
        assert {t.dy, t.dx} <= {0, 8, -8}
        np.testing.assert_array_equal(t.apply(x)[1].numpy(), _by_hand(x[1].numpy(), t).copy())
        back = t.invert(t.apply(x))
        if t.invertible:
            assert torch.equal(back, x)
        else:  # the part of the image that never left the frame comes back
            ys = slice(max(-t.dy, 0), 32 - max(t.dy, 0))
            xs = slice(max(t.dx, 0), 32 - max(-t.dx, 0)) if t.flip else slice(max(-t.dx, 0), 32 - max(t.dx, 0))
            assert torch.equal(back[:, :, ys, xs], x[:, :, ys, xs])
            assert not torch.equal(back, x)
    idx = torch.arange(2) % len(ts)
    mixed = apply_each(ts, x, idx)
    assert torch.equal(mixed[1], ts.transforms[1].apply(x[1:2])[0])


def test_rotation_translation_heads_label_each_part():
    ts = transformation_set("rot4-trans", 32)
    assert ts.heads == (4, 3, 3)
    for t, (k, dy, dx) in zip(ts.transforms, ts.labels.tolist()):
        assert k == t.k and (0, -8, 8)[dy] == t.dy and (0, -8, 8)[dx] == t.dx
    with pytest.raises(ValueError, match="transformation set"):
        transformation_set("rot5", 32)


# --- self-supervision ------------------------------------------------------------------------------
def test_dirichlet_mle_recovers_its_concentration():
    alpha = np.array([4.0, 1.5, 0.7])
    p = np.random.default_rng(0).dirichlet(alpha, size=20000)
    np.testing.assert_allclose(dirichlet_mle(np.log(p)), alpha, rtol=0.05)


def test_selfsup_nll_is_the_sum_of_minus_log_p_of_each_true_transformation():
    ds = make_blobs_dataset(n_train=20, n_test=4, channels=1, size=32)
    for name in ("rot4", "rot4-trans"):
        det = detectors.make("selfsup", transforms=name, epochs=1, batch_size=8).fit(ds.train_x[ds.train_y == 0])
        x = torch.from_numpy(ds.test_x).float() / 127.5 - 1
        ts, model = transformation_set(name, 32), det.model_
        hand = torch.zeros(len(x))
        with torch.no_grad():
            for t, label in zip(ts.transforms, ts.labels):
                for z, true in zip(model(t.apply(x)), label):
                    hand -= z.log_softmax(1)[:, true]
        np.testing.assert_allclose(det.decision_function(ds.test_x), hand.numpy(), rtol=1e-5)
        # the validation loss: image i under the (i mod T)-th transformation, its cross-entropy
        with torch.no_grad():
            ce = [sum(-z.log_softmax(1)[0, true] for z, true in zip(model(ts.transforms[i % len(ts)].apply(x[i:i + 1])),
                                                                   ts.labels[i % len(ts)]))
                  for i in range(len(x))]
        assert det._val_loss(model, x) == pytest.approx(float(sum(ce)) / len(x), rel=1e-5)


@pytest.mark.parametrize("name, shape", [("rot4", (4, 4)), ("rot4-flip", (8, 8)), ("geom72", (72, 72)),
                                         ("rot4-trans", (36, 10))])
def test_selfsup_dirichlet_score_fits_one_per_transformation_and_reloads(tmp_path, name, shape):
    ds = make_blobs_dataset(n_train=20, n_test=10, channels=1, size=32)
    det = detectors.make("selfsup", transforms=name, score="dirichlet", epochs=1, batch_size=8).fit(
        ds.train_x[ds.train_y == 0])
    alpha = det.model_.alpha
    assert alpha.shape == shape and (alpha > 0).all() and not torch.equal(alpha, torch.ones(shape))
    det.save(tmp_path / "m")
    np.testing.assert_allclose(detectors.load(tmp_path / "m").decision_function(ds.test_x),
                               det.decision_function(ds.test_x), rtol=1e-6)


def test_selfsup_shift_augment_shifts_each_training_image_within_its_range_before_its_transformation():
    from noveltykit.data.transforms import translate
    x = torch.rand(16, 1, 32, 32) * 2 - 1
    plain = detectors.make("selfsup", transforms="rot4")
    same_x, same_index = plain.training_batch(x, torch.Generator().manual_seed(3))
    assert torch.equal(same_x, x)  # no augmentation: the batch itself
    det = detectors.make("selfsup", transforms="rot4", shift_augment=4)
    shifted, index = det.training_batch(x, torch.Generator().manual_seed(3))
    assert torch.equal(index, same_index)  # the transformations are drawn as without the shift
    moved = 0
    for i in range(len(x)):
        match = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
                 if torch.equal(shifted[i:i + 1], translate(x[i:i + 1], dy, dx, fill="reflect"))]
        assert len(match) == 1, i  # exactly one shift in range explains each image
        moved += match[0] != (0, 0)
    assert moved >= 12  # 81 shifts, 1 of them none: most images move
    # the loss sees the shifted batch under its transformations
    torch.manual_seed(0)
    model = det._build((1, 32, 32)).eval()
    with torch.no_grad():
        loss, _ = det._loss(model, x, torch.Generator().manual_seed(3))
        assert float(loss) == pytest.approx(float(det.transformation_loss(model, shifted, index)), rel=1e-6)
    with pytest.raises(ValueError, match="shift_augment"):
        detectors.make("selfsup", shift_augment=-1)
    with pytest.raises(ValueError, match="half the image side"):
        detectors.make("selfsup", shift_augment=16).training_batch(x, torch.Generator())


def test_cosine_lr_schedule_sets_each_epochs_rate_and_records_it():
    ds = make_blobs_dataset(n_train=20, n_test=4, channels=1, size=32)
    det = detectors.make("selfsup", epochs=4, batch_size=8, lr=1e-3, lr_schedule="cosine")
    hand = [1e-3 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)]  # 1e-3, 8.5e-4, 5e-4, 1.5e-4
    assert [det._lr_at(e) for e in range(4)] == pytest.approx(hand)
    det.fit(ds.train_x[ds.train_y == 0])
    assert [r["lr"] for r in det.history_] == pytest.approx(hand)
    constant = detectors.make("selfsup", epochs=2, batch_size=8, lr=1e-3).fit(ds.train_x[ds.train_y == 0])
    assert [r["lr"] for r in constant.history_] == [1e-3, 1e-3]
    with pytest.raises(ValueError, match="lr_schedule"):
        detectors.make("selfsup", lr_schedule="step")
    with pytest.raises(ValueError, match="lr_schedule"):
        detectors.make("deep-svdd", lr_schedule="cosine")


def test_scoring_shows_a_bar_over_its_batches_only_with_progress_and_keeps_its_scores(monkeypatch):
    from noveltykit.detectors import torch_base
    from noveltykit.detectors.context import RunContext
    ds = make_blobs_dataset(n_train=20, n_test=10, channels=1, size=32)
    det = detectors.make("selfsup", epochs=1, batch_size=8).fit(ds.train_x[ds.train_y == 0])
    bars = []
    monkeypatch.setattr(torch_base, "tqdm", lambda it, **kw: bars.append(kw) or it)
    monkeypatch.setattr(type(det), "score_batch_size", 3)  # 10 images: 4 batches
    quiet = det.decision_function(ds.test_x)
    det.configure(RunContext(progress=True))
    shown = det.decision_function(ds.test_x)
    assert [b["disable"] for b in bars] == [True, False] and bars[1]["desc"] == "scoring"
    np.testing.assert_allclose(shown, quiet, rtol=1e-6)


def test_wide_resnet_shapes_and_depths():
    net = WideResNet(3, (4, 3, 3), depth=10, widen=4)
    outs = net(torch.randn(2, 3, 32, 32))
    assert [o.shape for o in outs] == [(2, 4), (2, 3), (2, 3)]
    assert net.fc.in_features == 256  # 64 x widen
    assert len([m for m in net.modules() if type(m).__name__ == "_Block"]) == 3  # (10 - 4) / 6 a group
    with pytest.raises(ValueError, match="6n"):
        WideResNet(3, (4,), depth=12)


def test_wide_resnet_channels_last_input_is_a_speed_only():
    """The channels-last input layout changes no output beyond float rounding, in eval and in
    training mode (BatchNorm on batch statistics), and leaves the weights' layout as saved."""
    torch.manual_seed(0)
    net, x = WideResNet(3, (4, 3), depth=10, widen=1), torch.randn(8, 3, 32, 32)
    for train in (False, True):
        net.train(train)
        net.channels_last = True
        fast = net(x)
        net.channels_last = False
        plain = net(x)
        for a, b in zip(fast, plain):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert all(p.is_contiguous() for p in net.parameters())


# --- Bayes factor ----------------------------------------------------------------------------------
def _one_d(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(0.3, 0.5, size=(n, 1))), torch.from_numpy(rng.normal(0.3, 0.5, size=(80, 1)))


def test_bayes_factor_equals_hand_computation_on_1d_gaussians():
    f, f_val = _one_d()
    q = torch.tensor([[-1.0], [0.3], [2.0]], dtype=torch.float64)
    for c in (1.0, 10.0):
        m = bf.BayesFactorModel(1, (1,), "gaussian", inflate=4.0, margin=0.1, log_c=math.log(c), seed=0)
        m.fit(f, f_val)
        mu, var = float(f.mean()), float(f.var())  # the PCA variance (n - 1)
        var_ml = float(f.var(unbiased=False))  # the mixture's own (maximum likelihood) plus its regulariser
        normal = norm.logpdf(q.numpy()[:, 0], mu, math.sqrt(var_ml + bf.REG * var))
        background = norm.logpdf(q.numpy()[:, 0], mu, math.sqrt(4.0 * var))
        np.testing.assert_allclose(m.score(q), background - normal - math.log(c), rtol=1e-6)
    m = bf.BayesFactorModel(1, (1,), "uniform", inflate=4.0, margin=0.1, log_c=0.0, seed=0)
    m.fit(f, f_val)
    lo, hi = float(f.min()), float(f.max())
    width = (hi - lo) * 1.2
    np.testing.assert_allclose(m.log_background(q).numpy(), -math.log(width))


def test_bayes_factor_mixture_size_chosen_on_validation_and_odds_threshold():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, size=(3, 2))
    f = torch.from_numpy(centres[rng.integers(0, 3, 600)] + rng.normal(0, 0.3, (600, 2)))
    f_val = torch.from_numpy(centres[rng.integers(0, 3, 200)] + rng.normal(0, 0.3, (200, 2)))
    m = bf.BayesFactorModel(2, (1, 3), "gaussian", 4.0, 0.1, 0.0, seed=0)
    m.fit(f, f_val)
    assert len(m.weights_) == 3 and m.val_loglik_[3] > m.val_loglik_[1]
    ds = make_blobs_dataset(n_train=40, n_test=10, channels=1, size=32)
    det = detectors.make("bayes-factor", n_components=4, threshold="odds", c=100.0).fit(ds.train_x[ds.train_y == 0])
    assert det.threshold_ == 0.0
    shifted = detectors.make("bayes-factor", n_components=4, threshold="odds", c=1.0).fit(ds.train_x[ds.train_y == 0])
    np.testing.assert_allclose(shifted.decision_function(ds.test_x) - det.decision_function(ds.test_x), math.log(100))


def test_compression_background_is_the_png_code_length():
    x = torch.zeros(2, 1, 32, 32)
    x[1] = torch.rand(1, 32, 32) * 2 - 1  # noise costs more bits than a flat image
    bits = bf.png_bits(x)
    assert bits[1] > 4 * bits[0]
    m = bf.BayesFactorModel(2, (1,), "compression", 4.0, 0.0, 0.0, seed=0, image_shape=(1, 32, 32))
    np.testing.assert_allclose(m.log_background(x.flatten(1)).numpy(),
                               (-bits * math.log(2) - 1024 * math.log(2 / 255)).numpy())
    with pytest.raises(ValueError, match="PNG"):
        detectors.make("feat-bayes", background="compression")
