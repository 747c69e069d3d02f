"""The tech report's GAN lab (§3, A.4-A.6): learning-rate control, pathology monitors and the
discriminator detector, each against hand values."""
import json
import math
import warnings

import pytest
import torch

from noveltykit.train.gan_unit import GAN
from noveltykit.train.gan import GANConfig
from noveltykit.train.lr_control import LRControl


@pytest.mark.parametrize("kind,loss_g,loss_d,expect", [
    ("proportional", 2.0, 0.5, (0.002, 0.0005)),
    ("exponential", 2.0, 0.5, (1e-3 * math.e ** 2, 1e-3 * math.e ** 0.5)),
    # eta_G = alpha L_F (a - b L_C), eta_D = alpha L_C (c - d L_F), a = 3, b = 2, c = 4, d = 1
    ("lv", 2.0, 0.5, (1e-3 * 2.0 * (3 - 2 * 0.5), 1e-3 * 0.5 * (4 - 1 * 2.0))),
])
def test_schedules_match_hand_values(kind, loss_g, loss_d, expect):
    ctl = LRControl(kind, alpha=1e-3, a=3, b=2, c=4, d=1, lr_max=1.0)
    assert ctl.rates(loss_g, loss_d) == pytest.approx(expect, rel=1e-12)


def test_rates_are_bounded():
    ctl = LRControl("lv", alpha=1.0, a=1, b=1, c=1, d=1, lr_min=1e-5, lr_max=0.1)
    g, d = ctl.rates(3.0, 0.1)  # eta_G = 3 (1 - 0.1) = 2.7 -> 0.1; eta_D = 0.1 (1 - 3) < 0 -> 1e-5
    assert (g, d) == (0.1, 1e-5)
    assert LRControl("exponential", alpha=1.0, lr_max=1e-2).rates(1e6, float("nan")) == (1e-2, 0.0)
    assert LRControl() == LRControl.of(GANConfig())  # one set of defaults
    with pytest.raises(ValueError, match="lr_control"):
        LRControl("pid")
    with pytest.raises(ValueError, match="alpha"):
        LRControl("lv", alpha=0)
    with pytest.raises(ValueError, match="lr_control"):
        GANConfig(lr_control="pid")


def _tiny_gan(**kw):
    torch.manual_seed(0)
    cfg = GANConfig(width=4, channels=1, norm="instance", **kw)
    return GAN(cfg), torch.rand(8, 1, 32, 32) * 2 - 1


def test_gan_update_sets_each_players_rate_from_the_losses():
    gan, x = _tiny_gan(lr_control="lv", lr_alpha=1e-3, lv_a=20, lv_b=1, lv_c=2, lv_d=0.01, lr_max=1.0)
    _, lg, ld = gan.losses(x)
    gan.update(lg["g"], ld)
    lf, lc = float(lg["g"].detach()), float(ld.detach())
    assert gan.opt_g.param_groups[0]["lr"] == pytest.approx(1e-3 * lf * (20 - lc))
    assert gan.opt_d.param_groups[0]["lr"] == pytest.approx(1e-3 * lc * (2 - 0.01 * lf))


def test_no_control_keeps_the_configured_rate():
    gan, x = _tiny_gan(lr=3e-4)
    _, lg, ld = gan.losses(x)
    gan.update(lg["g"], ld)
    assert gan.opt_g.param_groups[0]["lr"] == gan.opt_d.param_groups[0]["lr"] == 3e-4


# --- the clamp ------------------------------------------------------------------------------------
def test_clamp_bounds_and_finite_logs():
    from noveltykit.train.disc_gan import log_probs
    from noveltykit.train.stabilisers import clamp_probability
    p = torch.tensor([0.0, 0.5, 1.0])
    assert clamp_probability(p, 0.01).tolist() == pytest.approx([0.01, 0.5, 0.99])
    log_p, log_q = log_probs(torch.tensor([-1e4, 0.0, 1e4]), eps=0.01)
    assert torch.isfinite(log_p).all() and torch.isfinite(log_q).all()
    assert log_p.exp().min() >= 0.01 - 1e-7 and log_q.exp().min() >= 0.01 - 1e-7


# --- the pathology monitors -----------------------------------------------------------------------
def _rows(n, loss_g=1.0, loss_d=1.0, fake_var=0.1, real_var=0.2, d_acc=0.9):
    return torch.tensor([[loss_g, loss_d, fake_var, real_var, d_acc]] * n)


def test_stuck_monitor_fires_once_when_the_run_reaches_its_length():
    from noveltykit.train.pathology import PathologyFields, PathologyMonitor
    mon = PathologyMonitor(PathologyFields(stuck_steps=5, stuck_band=0.02, watch_after=0))
    assert mon.check(0, _rows(4, d_acc=0.51)) == []
    assert mon.check(4, _rows(1, d_acc=0.49)) == [{"monitor": "stuck", "step": 4, "value": pytest.approx(0.49)}]
    assert mon.check(5, _rows(10, d_acc=0.5)) == []  # still stuck: one event per episode
    assert mon.check(15, _rows(1, d_acc=0.8)) == []
    assert mon.check(16, _rows(4, d_acc=0.5)) == []  # a new run must be 5 long again
    assert [e["monitor"] for e in mon.check(20, _rows(1, d_acc=0.5))] == ["stuck"]


def test_nonfinite_and_explosion_monitors():
    from noveltykit.train.pathology import PathologyFields, PathologyMonitor
    mon = PathologyMonitor(PathologyFields(watch_after=11))
    rows = torch.cat([_rows(1, loss_d=float("inf")), _rows(1), _rows(1, loss_d=float("nan")), _rows(1, fake_var=0.95),
                      _rows(1, fake_var=0.002, real_var=0.1), _rows(1, fake_var=0.002, real_var=0.3)])
    # step 10 is before watch_after: not watched; collapse is relative to the real batch's variance
    assert [(e["monitor"], e["step"]) for e in mon.check(10, rows)] == [("nonfinite", 12), ("explosion", 13),
                                                                          ("collapse", 15)]
    with pytest.raises(ValueError, match="on_pathology"):
        PathologyMonitor(PathologyFields(on_pathology="panic"))


def _blobs(n=48):
    from conftest import make_blobs_dataset
    ds = make_blobs_dataset(n_train=n + 16, n_test=30, channels=1, size=32)
    normal = ds.train_x[ds.train_y == 0]
    return ds, normal


GAN_DISC_FAST = dict(width=4, code=8, epochs=3, batch_size=8, watch_after=0)


def _constant_generator(monkeypatch):
    """Force G to one image whatever the noise: the collapse of Fig. 3.1."""
    from noveltykit.nets.noise_gan import NoiseGAN
    monkeypatch.setattr(NoiseGAN, "generate", lambda self, z: torch.zeros(len(z), 1, 32, 32) + 0 * z.sum())


def test_collapse_monitor_fires_on_a_constant_generator_and_not_on_a_healthy_run(monkeypatch):
    from noveltykit import detectors
    _, x = _blobs()
    healthy = detectors.make("gan-disc", **GAN_DISC_FAST).fit(x)
    assert [e for e in healthy.events_ if e["monitor"] == "collapse"] == []
    ratio = torch.tensor(healthy.trace_["fake_var"]) / torch.tensor(healthy.trace_["real_var"])
    assert ratio.min() > 2 * healthy.collapse_below  # quiet with a margin
    _constant_generator(monkeypatch)
    with pytest.warns(RuntimeWarning, match="collapse at step 0"):
        collapsed = detectors.make("gan-disc", **GAN_DISC_FAST).fit(x)
    assert collapsed.events_[0] == {"monitor": "collapse", "step": 0, "value": 0.0}
    assert collapsed.history_[-1]["pathology_events"] >= 1


def test_pathology_actions_stop_and_reinit_d(monkeypatch, tmp_path):
    from noveltykit import detectors
    from noveltykit.detectors.context import RunContext
    from noveltykit.train.pathology import PathologyStop
    _, x = _blobs()
    _constant_generator(monkeypatch)
    det = detectors.make("gan-disc", **GAN_DISC_FAST, on_pathology="stop").configure(RunContext(checkpoint_dir=tmp_path))
    with pytest.raises(PathologyStop, match="collapse at step 0.*last good checkpoint"):
        det.fit(x)
    with pytest.warns(RuntimeWarning, match="collapse"):
        reinit = detectors.make("gan-disc", **GAN_DISC_FAST, on_pathology="reinit-d").fit(x)
    assert reinit.history_[0]["d_reinits"] == 1  # the collapse episode starts once and lasts


# --- gan-disc -------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{}, {"generator": "none"}, {"init": "ae", "ae_epochs": 1, "joint_ae": True},
                                {"loss": "minimax", "k": 2, "lr_control": "proportional"}])
def test_gan_disc_variants_resume_exactly(tmp_path, monkeypatch, kw):
    from conftest import fit_killed_then_resumed
    from noveltykit import detectors
    from noveltykit.train.disc_gan import DiscGANUnit
    _, x = _blobs()
    spec = {**GAN_DISC_FAST, **kw}
    whole = detectors.make("gan-disc", **spec).fit(x)
    resumed = fit_killed_then_resumed(monkeypatch, DiscGANUnit, 2, lambda: detectors.make("gan-disc", **spec), x,
                                      tmp_path)
    for (k, a), b in zip(whole.net_.state_dict().items(), resumed.net_.state_dict().values()):
        assert torch.equal(a, b), k
    assert whole.trace_ == resumed.trace_


def test_gan_disc_scores_and_options():
    from noveltykit import detectors
    from noveltykit.train.disc_gan import curator_loss, forger_loss
    _, x = _blobs()
    one = detectors.make("gan-disc", **GAN_DISC_FAST).fit(x)
    five = detectors.as_image_tensor(x[:5])
    logit = one.net_.logit(five).detach()
    assert one.decision_function(x[:5]) == pytest.approx((1 - torch.sigmoid(logit)).double().numpy(), rel=1e-5)
    log = detectors.make("gan-disc", **GAN_DISC_FAST, score="neg-log-d").fit(x)
    assert log.decision_function(x[:5]) == pytest.approx(
        (-torch.log(torch.sigmoid(log.net_.logit(five).detach()))).double().numpy(), rel=1e-5)
    real, fake = torch.tensor([2.0]), torch.tensor([-1.0])
    p_r, p_f = torch.sigmoid(real), torch.sigmoid(fake)
    assert float(curator_loss("non-saturating", real, fake, 0)) == pytest.approx(float(-p_r.log() - (1 - p_f).log()))
    assert float(forger_loss("non-saturating", fake, None, 0)) == pytest.approx(float(-p_f.log()))
    assert float(forger_loss("minimax", fake, None, 0)) == pytest.approx(float((1 - p_f).log()))
    assert float(curator_loss("report", real, fake, 0)) == pytest.approx(float(-p_f.log()))
    assert float(forger_loss("report", fake, real, 0)) == pytest.approx(float(-(1 - p_f).log() - p_r.log()))
    with pytest.raises(ValueError, match="joint_ae needs init='ae'"):
        detectors.make("gan-disc", joint_ae=True)
    with pytest.raises(ValueError, match="no generator"):
        detectors.make("gan-disc", generator="none", init="ae")


def test_bench_records_the_trace_events_and_step_curves(tmp_path):
    from conftest import make_blobs_dataset
    from noveltykit.experiments.bench import BenchConfig, run_benchmark
    ds = make_blobs_dataset(n_train=40, n_test=10, size=32)
    method = "gan-disc:width=4,code=8,epochs=2,batch_size=8,init=ae,ae_epochs=1,lr_control=lv"
    r = run_benchmark(BenchConfig(dataset="blobs", methods=[method], classes=[0], seeds=[0], out=str(tmp_path)),
                      dataset=ds, progress=False)[0]
    assert "trace" not in r  # per-step numbers live in their own file, not in results.json
    trace = json.loads((tmp_path / r["trace_file"]).read_text())
    n_steps = len(trace["step"])
    assert n_steps == 2 * -(-r["n_train"] // 8)  # one trace row a GAN step, not the autoencoder's
    assert set(trace) == {"step", "loss_g", "loss_d", "fake_var", "real_var", "d_acc", "lr_g", "lr_d"}
    assert [h["phase"] for h in r["history"]] == ["ae", "gan", "gan"]
    assert r["pathology_events"] == [] or all({"monitor", "step", "value"} == set(e) for e in r["pathology_events"])
    assert (tmp_path / r["steps_plot"]).stat().st_size > 1000


def test_gan_disc_generator_none_from_a_method_spec():
    from noveltykit import detectors
    from noveltykit.detectors.specs import MethodSpec
    spec = MethodSpec.parse("gan-disc:generator=none,lr_control=none")
    det = detectors.make(spec.detector, **dict(spec.params))
    assert det.generator == "none" and det.lr_control == "none"


def test_an_ensembles_record_keeps_no_member_trace(tmp_path):
    from conftest import make_blobs_dataset
    from noveltykit.experiments.bench import BenchConfig, run_benchmark
    ds = make_blobs_dataset(n_train=40, n_test=10, size=32)
    method = "ensemble:members=gan-disc/width=4/code=8/epochs=2/batch_size=8/init=ae/ae_epochs=1/lr_control=lv+knn"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = run_benchmark(BenchConfig(dataset="blobs", methods=[method], classes=[0], seeds=[0], out=str(tmp_path)),
                          dataset=ds, progress=False)[0]
    gan = r["member_fits"][0]
    assert gan["detector"] == "gan-disc" and len(gan["history"]) == 3 and "trace" not in gan  # 1 ae + 2 gan epochs
