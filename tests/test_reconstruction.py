"""The reconstruction family and Deep SVDD: their cores against hand or autograd computations, and
the shared pieces they are built of (batch transformations, conv builders)."""
import numpy as np
import pytest
import torch

from noveltykit import detectors
from noveltykit.data import transforms as T
from noveltykit.detectors.autoencoders import dense_contraction, projected_contraction
from noveltykit.detectors.deep_svdd import initial_center, soft_radius
from noveltykit.detectors.vae import kl_to_standard_normal
from noveltykit.nets.conv import (ConvAutoencoder, DenseAutoencoder, SVDDNet, conv_encoder, lenet_decoder,
                                  lenet_encoder)

from conftest import fit_killed_then_resumed, make_blobs_dataset


def _full_jacobian_sq(encode, x):
    """||d encode(x_i) / d x_i||_F^2 per image, from autograd's full Jacobian."""
    out = []
    for xi in x:
        jac = torch.autograd.functional.jacobian(lambda v: encode(v[None])[0], xi)
        out.append(jac.pow(2).sum())
    return torch.stack(out)


def test_dense_contraction_is_the_exact_jacobian_norm():
    torch.manual_seed(0)
    model = DenseAutoencoder((1, 4, 4), hidden=5)
    x = torch.rand(3, 1, 4, 4) * 2 - 1
    np.testing.assert_allclose(dense_contraction(model, x).detach(), _full_jacobian_sq(model.encode, x),
                               rtol=1e-5)


def test_projected_contraction_is_unbiased_for_a_conv_encoder():
    torch.manual_seed(0)
    model = ConvAutoencoder(1, 8, width=2, code=3, norm="none")
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    exact = _full_jacobian_sq(model.encode, x)
    estimate = projected_contraction(model.encode, x, torch.Generator().manual_seed(1), projections=4000)
    np.testing.assert_allclose(estimate.detach(), exact, rtol=0.06)  # Monte Carlo: 4000 draws
    one = projected_contraction(model.encode, x, torch.Generator().manual_seed(1), projections=1)
    assert one.requires_grad, "the estimate trains the encoder"


def test_contractive_penalty_makes_the_encoder_flatter():
    ds = make_blobs_dataset(n_train=40, channels=1, size=8)
    x = ds.train_x[ds.train_y == 0]
    common = dict(epochs=15, batch_size=8, hidden=16)
    plain = detectors.make("contractive-ae", lam=0.0, **common).fit(x)
    flat = detectors.make("contractive-ae", lam=1.0, **common).fit(x)
    assert flat.history_[-1]["contraction"] < 0.5 * plain.history_[-1]["contraction"]


def test_vae_kl_by_hand_and_elbo_reproducible():
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, np.log(4.0)]])
    expected = 0.5 * ((1 + 1 - 1 - 0) + (0 + 4 - 1 - np.log(4.0)))
    assert kl_to_standard_normal(mu, logvar).item() == pytest.approx(expected)
    ds = make_blobs_dataset(n_train=30, channels=1, size=32)
    x = ds.train_x[ds.train_y == 0]
    det = detectors.make("vae", width=4, epochs=1, batch_size=8, score="elbo", samples=4).fit(x)
    np.testing.assert_array_equal(det.decision_function(ds.test_x), det.decision_function(ds.test_x))


def test_dae_trains_on_noisy_inputs_and_scores_clean_ones(monkeypatch):
    ds = make_blobs_dataset(n_train=30, channels=1, size=8)
    x = ds.train_x[ds.train_y == 0]
    seen = []
    real = T.gaussian_noise
    monkeypatch.setattr("noveltykit.detectors.autoencoders.gaussian_noise",
                        lambda xb, sigma, g: seen.append(sigma) or real(xb, sigma, g))
    det = detectors.make("dae", sigma=0.3, width=4, code=4, epochs=1, batch_size=8).fit(x)
    n_batches = len(seen)
    det.decision_function(ds.test_x)
    assert n_batches > 0 and set(seen) == {0.3} and len(seen) == n_batches, "no noise when scoring"


@pytest.mark.parametrize("arch", ["dcgan", "lenet"])
def test_deep_svdd_refuses_bias_terms_and_builds_none(arch):
    with pytest.raises(ValueError, match="hypersphere collapse"):
        detectors.make("deep-svdd", bias=True, arch=arch)
    net = SVDDNet(1, 32, width=4, code=8, arch=arch)
    assert not any("bias" in n for n, _ in net.named_parameters())
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.affine for m in norms)


@pytest.mark.parametrize("channels,size", [(1, 8), (3, 32)])
def test_lenet_builders_pool_to_4x4_and_mirror(channels, size):
    enc, dec = lenet_encoder(channels, size, 4, 16), lenet_decoder(channels, size, 4, 16)
    levels = {8: 1, 32: 3}[size]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in enc) == levels
    assert sum(isinstance(m, torch.nn.Upsample) for m in dec) == levels
    assert all(m.kernel_size == (5, 5) for m in enc.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.rand(2, channels, size, size) * 2 - 1
    code = enc(x)
    assert code.shape == (2, 16)
    out = dec(code)
    assert out.shape == x.shape and out.abs().max() <= 1
    assert any("bias" in n for n, _ in enc.named_parameters())  # bias=True (the default) builds them
    with pytest.raises(ValueError, match="arch"):
        detectors.make("deep-svdd", arch="resnet")


def test_deep_svdd_centre_and_radius():
    torch.manual_seed(0)
    net = SVDDNet(1, 8, width=2, code=6)
    x = torch.rand(20, 1, 8, 8) * 2 - 1
    c = initial_center(net, x, eps=0.1)
    with torch.no_grad():
        net.eval()
        mean = net.embed(x).mean(0)
    big = mean.abs() >= 0.1
    assert torch.equal(c[big], mean[big]) and (c[~big].abs() == 0.1).all()
    assert (torch.sign(c[~big]) == torch.where(mean[~big] < 0, -1.0, 1.0)).all()
    net.center.copy_(c)
    r = soft_radius(net, x, nu=0.25)
    d = (net.embed(x) - c).pow(2).sum(1).sqrt()
    assert (d <= r + 1e-6).float().mean() == pytest.approx(0.75, abs=0.06)


def test_deep_svdd_pretrains_then_pulls_normal_images_in():
    ds = make_blobs_dataset(n_train=40, channels=1, size=32)
    x = ds.train_x[ds.train_y == 0]
    det = detectors.make("deep-svdd", width=4, code=8, pretrain_epochs=2, epochs=6, batch_size=8).fit(x)
    phases = [h["phase"] for h in det.history_]
    assert phases == ["pretrain"] * 2 + ["svdd"] * 6
    svdd = [h["loss"] for h in det.history_[2:]]
    assert svdd[-1] < svdd[0]
    assert det.history_[0]["val_loss"] == float("inf"), "selection never picks a pre-training epoch"
    assert det.model_.center.abs().min() >= 0.1 - 1e-7


def test_contrast_norm_is_ruffs_gcn_then_the_training_range():
    from noveltykit.nets.conv import ContrastNorm
    x = torch.rand(6, 3, 8, 8) * 2 - 1
    norm = ContrastNorm(True)
    g = norm.contrast(x).flatten(1)
    assert torch.allclose(g.mean(1), torch.zeros(6), atol=1e-6)
    assert torch.allclose(g.abs().mean(1), torch.ones(6), atol=1e-5)
    assert torch.allclose(norm.contrast(3 * x + 0.5), norm.contrast(x), atol=1e-5), "contrast-invariant"
    norm.fit_range(x, batch=4)  # the range over every batch, not the last one
    y = norm(x)
    assert y.min().item() == pytest.approx(-1, abs=1e-6) and y.max().item() == pytest.approx(1, abs=1e-6)
    assert torch.isfinite(norm(torch.zeros(1, 3, 8, 8))).all(), "a flat image"
    off = ContrastNorm(False)
    off.fit_range(x)
    assert torch.equal(off(x), x)


def test_deep_svdd_options_contrast_norm_and_fresh_optimizer(tmp_path, monkeypatch):
    ds = make_blobs_dataset(n_train=40, channels=1, size=32)
    x = ds.train_x[ds.train_y == 0]
    kw = dict(width=4, code=8, pretrain_epochs=2, epochs=2, batch_size=8, contrast_norm=True)
    det = detectors.make("deep-svdd", **kw).fit(x)
    lo, hi = det.model_.prep.range.tolist()
    assert lo < -1 and hi > 1, "the range of GCN'd images, from the training images"
    det.save(tmp_path / "m")
    again = detectors.load(tmp_path / "m")
    assert torch.equal(again.model_.prep.range, det.model_.prep.range)
    np.testing.assert_array_equal(again.decision_function(x), det.decision_function(x))
    # the fresh optimiser: a new Adam at the first Deep SVDD epoch, so its step count restarts there
    from noveltykit.train.model_unit import ModelUnit
    steps = []
    begin = ModelUnit.begin_epoch

    def spy(unit, epoch):
        out = begin(unit, epoch)
        states = list(unit.opt.state.values())
        steps.append(int(states[0]["step"]) if states else 0)
        return out
    monkeypatch.setattr(ModelUnit, "begin_epoch", spy)
    detectors.make("deep-svdd", **kw, fresh_optimizer=True).fit(x)
    fresh, steps[:] = steps[:], []
    detectors.make("deep-svdd", **kw, fresh_optimizer=False).fit(x)
    per_epoch = fresh[1]
    assert fresh == [0, per_epoch, 0, per_epoch]
    assert steps == [0, per_epoch, 2 * per_epoch, 3 * per_epoch]


def test_transforms_invert_and_are_seeded():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    for k in range(-1, 5):
        assert torch.equal(T.inverse("rotate90", T.rotate90(x, k), k=k), x)
    assert torch.equal(T.rotate90(x, 1)[0, 0, 0], x[0, 0, :, -1]), "counter-clockwise"
    assert torch.equal(T.inverse("flip", T.flip(x)), x)
    shifted = T.translate(x, 1, -1, fill="zeros")
    assert torch.equal(shifted[:, :, 1:, :3], x[:, :, :3, 1:]) and (shifted[:, :, 0] == 0).all()
    assert torch.equal(T.translate(x, 0, 0), x) and T.translate(x, 2, 2).shape == x.shape
    a = T.gaussian_noise(x / 31 - 1, 0.5, torch.Generator().manual_seed(3))
    b = T.gaussian_noise(x / 31 - 1, 0.5, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    flips = T.random_flips(x, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(flips, T.flip(x))
    moved = T.random_translations(x, torch.Generator().manual_seed(0), max_shift=1)
    assert moved.shape == x.shape
    with pytest.raises(ValueError, match="no inverse"):
        T.inverse("gaussian_noise", x)


@pytest.mark.parametrize("size", [8, 16, 32, 64])
def test_conv_builders_are_size_generic(size):
    ae = ConvAutoencoder(3, size, width=4, code=5)
    x = torch.zeros(2, 3, size, size)
    assert ae(x).shape == x.shape and ae.encode(x).shape == (2, 5)
    with pytest.raises(ValueError, match="power of two"):
        conv_encoder(1, size + 4, 4, 4)


@pytest.mark.parametrize("crash_epoch", [2, 3])  # at the fresh optimiser's first epoch, and after it
def test_deep_svdd_fresh_optimizer_resumes_exactly(tmp_path, monkeypatch, crash_epoch):
    from noveltykit.train.model_unit import ModelUnit
    ds = make_blobs_dataset(n_train=40, channels=1, size=32)
    x = ds.train_x[ds.train_y == 0]
    kw = dict(width=4, code=8, pretrain_epochs=2, epochs=3, batch_size=8, fresh_optimizer=True, contrast_norm=True)
    whole = detectors.make("deep-svdd", **kw).fit(x)
    resumed = fit_killed_then_resumed(monkeypatch, ModelUnit, crash_epoch, lambda: detectors.make("deep-svdd", **kw),
                                      x, tmp_path)
    for (k, a), b in zip(whole.model_.state_dict().items(), resumed.model_.state_dict().values()):
        assert torch.equal(a, b), k


def test_deep_svdd_fine_tune_is_the_last_epochs_of_each_phase_at_a_tenth(tmp_path, monkeypatch):
    from noveltykit.train.model_unit import ModelUnit
    det = detectors.make("deep-svdd", pretrain_epochs=4, epochs=3, fine_tune=2, lr=1e-3)
    assert [det._lr_at(e) for e in range(7)] == [1e-3, 1e-3, 1e-4, 1e-4, 1e-3, 1e-4, 1e-4]
    with pytest.raises(ValueError, match="fine_tune"):
        detectors.make("deep-svdd", pretrain_epochs=4, epochs=3, fine_tune=4)
    seen = []
    step = ModelUnit.step

    def spy(unit, *args):
        seen.append(unit.opt.param_groups[0]["lr"])
        return step(unit, *args)
    monkeypatch.setattr(ModelUnit, "step", spy)
    x = make_blobs_dataset(n_train=24, channels=1, size=32).train_x[:16]
    kw = dict(width=4, code=8, pretrain_epochs=2, epochs=2, fine_tune=1, batch_size=16, lr=1e-3)
    detectors.make("deep-svdd", **kw).fit(x[:14], x[14:])
    assert seen == [1e-3, 1e-4, 1e-3, 1e-4]  # one step an epoch: each epoch's rate as scheduled
    # a resume sets the rate of the epoch it resumes at: killed before epoch 3, resumed there
    seen.clear()
    resumed = fit_killed_then_resumed(monkeypatch, ModelUnit, 3, lambda: detectors.make("deep-svdd", **kw), x,
                                      tmp_path)
    assert resumed.history_[-1]["epoch"] == 3 and seen == [1e-3, 1e-4, 1e-3, 1e-4]
