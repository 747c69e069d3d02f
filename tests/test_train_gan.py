import json
import math

import numpy as np
import pytest
import torch

from noveltykit.nets.dcgan import GeneratorOutput
from noveltykit.train import gan, gan_unit
from noveltykit.train.gan import GANConfig, build_networks, generator_losses, score_batches, train_gan
from noveltykit.train.stabilisers import TrainingDiverged, discriminator_bce

from conftest import template_images


def _data(n=64, seed=0):
    x = template_images(n, seed=seed)
    return x[: n - 16], x[n - 16:]


def tiny(**kw):
    return GANConfig(**{"width": 4, "epochs": 2, "batch_size": 16, "channels": 1, **kw})


def test_generator_loss_terms_by_hand():
    x = torch.zeros(2, 1, 2, 2)
    out = GeneratorOutput(z1=torch.ones(2, 3, 1, 1), x_hat=torch.full((2, 1, 2, 2), 0.5),
                          z2=torch.zeros(2, 3, 1, 1))
    f_real, f_fake = torch.zeros(2, 4), torch.full((2, 4), 2.0)
    losses = generator_losses(tiny(w_con=10, w_enc=1, w_adv=1), x, out, f_real, f_fake)
    assert losses["con"].item() == pytest.approx(0.5)  # mean |x - x_hat|
    assert losses["enc"].item() == pytest.approx(1.0)  # mean (z1 - z2)^2
    assert losses["adv"].item() == pytest.approx(4.0)  # mean (f(x) - f(x_hat))^2
    assert losses["g"].item() == pytest.approx(10 * 0.5 + 1.0 + 4.0)


def test_discriminator_bce_by_hand_and_clamped():
    lr, lf = torch.tensor([0.0, 2.0]), torch.tensor([-1.0, 0.0])
    sig = lambda t: 1 / (1 + math.exp(-t))
    expected = -0.5 * ((math.log(0.5) + math.log(sig(2))) / 2 + (math.log(1 - sig(-1)) + math.log(0.5)) / 2)
    assert discriminator_bce(lr, lf).item() == pytest.approx(expected, rel=1e-6)
    # a certain discriminator: plain BCE of probability exactly 0/1 is clamped to [eps, 1 - eps]
    eps = 0.01
    certain = discriminator_bce(torch.tensor([-200.0]), torch.tensor([200.0]), eps=eps)
    assert certain.item() == pytest.approx(-math.log(eps), rel=1e-5)


def test_training_reduces_the_loss():
    x, v = _data()
    result = train_gan(tiny(epochs=10, batch_size=4, width=8), x, v, progress=False)
    con = [h["loss_con"] for h in result.history]
    assert con[-1] < 0.5 * con[0], con
    assert result.history[-1]["val_loss"] < result.history[0]["val_loss"]
    assert not result.generator.training


def test_resume_equals_uninterrupted(tmp_path):
    x, v = _data()
    cfg = tiny(epochs=3)
    full = train_gan(cfg, x, v, checkpoint_dir=tmp_path / "a", progress=False)

    def die_at_epoch_2(epoch, _):
        if epoch == 2:
            raise KeyboardInterrupt
        return {}

    with pytest.raises(KeyboardInterrupt):
        train_gan(cfg, x, v, checkpoint_dir=tmp_path / "b", progress=False, on_epoch_end=die_at_epoch_2)
    assert json.loads((tmp_path / "b" / "latest.json").read_text())["epoch"] == 1
    resumed = train_gan(cfg, x, v, checkpoint_dir=tmp_path / "b", resume=True, progress=False)
    assert [h["epoch"] for h in resumed.history] == [0, 1, 2]
    for (k, a), b in zip(full.generator.state_dict().items(), resumed.generator.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ValueError, match="another configuration"):
        train_gan(tiny(epochs=3, lr=1e-4), x, v, checkpoint_dir=tmp_path / "b", resume=True, progress=False)


def test_nan_stops_with_clear_error_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    x, v = _data()
    real = gan_unit.generator_losses
    calls = {"n": 0}

    def poisoned(*args):
        losses = real(*args)
        calls["n"] += 1
        if calls["n"] > 3:  # epoch 0 has 3 steps; poison epoch 1
            losses["g"] = losses["g"] * float("nan")
        return losses

    monkeypatch.setattr(gan_unit, "generator_losses", poisoned)
    with pytest.raises(TrainingDiverged, match="epoch 2.*last good checkpoint"):
        train_gan(tiny(epochs=3), x, v, checkpoint_dir=tmp_path, progress=False)
    assert json.loads((tmp_path / "latest.json").read_text())["epoch"] == 0


def test_discriminator_reinitialised_when_its_loss_collapses():
    x, v = _data()
    never = train_gan(tiny(epochs=1, d_reinit_below=0), x, v, progress=False)
    always = train_gan(tiny(epochs=1, d_reinit_below=1e9), x, v, progress=False)
    assert never.history[0]["d_reinits"] == 0 and always.history[0]["d_reinits"] == 1  # checked at the end


def test_select_val_picks_the_lowest_validation_loss():
    x, v = _data()
    result = train_gan(tiny(epochs=4, select="val"), x, v, progress=False)
    losses = [h["val_loss"] for h in result.history]
    assert result.selected_epoch == int(np.argmin(losses))
    assert gan.validation_loss(tiny(), result.generator, v) == pytest.approx(min(losses), rel=1e-5)


def test_ema_is_the_moving_average_of_the_generator():
    x, v = _data(n=32)  # 16 training images, batch 16: exactly one step
    cfg = tiny(epochs=1, ema_decay=0.25)
    torch.manual_seed(cfg.seed)
    init, _ = build_networks(cfg)
    stepped = train_gan(tiny(epochs=1), x, v, progress=False).generator
    averaged = train_gan(cfg, x, v, progress=False).generator
    for k, a in averaged.state_dict().items():
        if a.is_floating_point() and "running" not in k:
            expected = 0.25 * init.state_dict()[k] + 0.75 * stepped.state_dict()[k]
            torch.testing.assert_close(a, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_scores_do_not_depend_on_order_or_grouping(norm):
    x, v = _data()
    result = train_gan(tiny(epochs=1, norm=norm), x, v, progress=False)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(1))
    whole = score_batches(result.generator, x, "latent")
    shuffled = score_batches(result.generator, x[perm], "latent", batch_size=5)
    np.testing.assert_allclose(shuffled, whole[perm.numpy()], rtol=1e-5, atol=1e-7)


def test_bad_config_is_refused():
    for kw, match in [({"variant": "xyz"}, "variant"), ({"norm": "layer"}, "norm"),
                      ({"select": "best-test"}, "select"), ({"batch_size": 0}, "batch_size")]:
        with pytest.raises(ValueError, match=match):
            GANConfig(**kw)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_and_cpu_scoring_agree(tmp_path):
    from noveltykit import detectors
    from noveltykit.detectors.context import RunContext

    x, v = _data()
    det = detectors.make("ede-gan", width=8, epochs=2, batch_size=16).configure(RunContext(device="cuda")).fit(x, v)
    gpu_scores = det.decision_function(x)
    det.save(tmp_path / "m")
    cpu = detectors.load(tmp_path / "m")  # a loaded model runs on the CPU unless configured
    np.testing.assert_allclose(cpu.decision_function(x), gpu_scores, rtol=1e-3, atol=1e-5)
