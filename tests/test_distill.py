import copy
import json
import shutil
import warnings

import numpy as np
import pytest
import torch

from noveltykit import detectors
from noveltykit.detectors.context import RunContext
from noveltykit.distill import DistillConfig, distillation_loss, parse_structure, train_distill
from noveltykit.nets.dcgan import Generator, GeneratorOutput
from noveltykit.train.gan import GANConfig, build_networks, train_gan
from noveltykit.detectors.ede_gan import EDEGANDetector

from busy_helpers import returns_within
from conftest import template_images


def _data(n=48, seed=0):
    x = template_images(n, seed=seed)
    return x[: n - 16], x[n - 16:]


def _cfg(**kw):
    return GANConfig(**{"width": 2, "epochs": 1, "batch_size": 32, "channels": 1, "norm": "instance", **kw})


@pytest.fixture(scope="module")
def teacher():
    x, v = _data()
    result = train_gan(_cfg(width=4, epochs=2, batch_size=16), x, v, progress=False)
    return result.generator, result.discriminator


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_distillation_loss_by_hand():
    t = GeneratorOutput(z1=torch.zeros(2, 4, 1, 1), x_hat=torch.zeros(2, 1, 2, 2), z2=torch.ones(2, 4, 1, 1))
    s = GeneratorOutput(z1=torch.full((2, 4, 1, 1), 2.0), x_hat=torch.full((2, 1, 2, 2), -0.5),
                        z2=torch.zeros(2, 4, 1, 1, requires_grad=True))
    k = distillation_loss(DistillConfig(w1=1, wx=3, w2=0.5), t, s)
    assert k["k1"].item() == pytest.approx(4.0)  # mean (z1 - z1')^2
    assert k["kx"].item() == pytest.approx(0.5)  # mean |x_hat - x_hat'|
    assert k["k2"].item() == pytest.approx(1.0)
    assert k["k"].item() == pytest.approx(4.0 + 3 * 0.5 + 0.5 * 1.0)
    k["k"].backward()
    assert s.z2.grad is not None  # the student's outputs receive the gradient


def test_structure_names():
    assert [parse_structure(v) for v in (2, "2", "KDGAN-2", "kdgan2", "p23", "P-KDGAN-II-24")] == \
        ["2", "2", "2", "2", "p23", "p24"]
    with pytest.raises(ValueError, match="unknown distillation structure"):
        parse_structure("5")
    with pytest.raises(ValueError, match="w1"):
        DistillConfig(w1=-1)


# structure -> (teacher G and D train, student D trains); the student G always trains
EXPECTED = {"1": (False, False), "2": (False, True), "3": (True, False), "4": (True, True)}


@pytest.mark.parametrize("structure", sorted(EXPECTED))
def test_each_structure_updates_exactly_its_networks(teacher, structure):
    x, v = _data()
    t_g, t_d = teacher
    student_cfg = _cfg(seed=3)
    torch.manual_seed(student_cfg.seed)  # train_distill draws the student's init the same way
    s_g0, s_d0 = (_state(m) for m in build_networks(student_cfg))
    t_g0, t_d0 = _state(t_g), _state(t_d)
    result = train_distill(DistillConfig(structure), student_cfg, _cfg(width=4), t_g, t_d, x, v, progress=False)
    teacher_trains, student_d_trains = EXPECTED[structure]
    assert _same(_state(t_g), t_g0) and _same(_state(t_d), t_d0), "the caller's teacher is never modified"
    assert _same(_state(result.teacher), t_g0) is not teacher_trains
    assert _same(_state(result.teacher_discriminator), t_d0) is not teacher_trains
    assert not _same(_state(result.student), s_g0)
    assert _same(_state(result.student_discriminator), s_d0) is not student_d_trains
    assert result.history[0]["structure"] == f"KDGAN-{structure}"


def test_step_two_starts_from_step_one_and_resumes_across_the_boundary(teacher, tmp_path):
    x, v = _data()
    t_g, t_d = teacher
    cfg = _cfg(epochs=2, batch_size=16)
    step_one = train_distill(DistillConfig("2"), cfg, _cfg(width=4), t_g, t_d, x, v, progress=False)
    seen = {}

    def snapshot(epoch, student):
        seen[epoch] = _state(student)
        return {}

    full = train_distill(DistillConfig("p23"), cfg, _cfg(width=4), t_g, t_d, x, v, progress=False,
                         checkpoint_dir=tmp_path / "a", on_epoch_end=snapshot)
    assert _same(seen[1], _state(step_one.student)), "step 2 starts from step 1's last weights"
    assert [h["structure"] for h in full.history] == ["KDGAN-2"] * 2 + ["KDGAN-3"] * 2
    assert "teacher_val_loss" in full.history[2] and "teacher_val_loss" not in full.history[1]

    def die_in_step_two(epoch, student):
        if epoch == 2:
            raise KeyboardInterrupt
        return {}

    with pytest.raises(KeyboardInterrupt):
        train_distill(DistillConfig("p23"), cfg, _cfg(width=4), t_g, t_d, x, v, progress=False,
                      checkpoint_dir=tmp_path / "b", on_epoch_end=die_in_step_two)
    assert json.loads((tmp_path / "b" / "latest.json").read_text())["epoch"] == 1
    resumed = train_distill(DistillConfig("p23"), cfg, _cfg(width=4), t_g, t_d, x, v, progress=False,
                            checkpoint_dir=tmp_path / "b", resume=True)
    assert _same(_state(resumed.student), _state(full.student))
    assert _same(_state(resumed.teacher), _state(full.teacher))
    with pytest.raises(ValueError, match="another configuration"):
        train_distill(DistillConfig("p24"), cfg, _cfg(width=4), t_g, t_d, x, v, progress=False,
                      checkpoint_dir=tmp_path / "b", resume=True)


def test_distillation_pulls_the_student_towards_the_teacher(teacher):
    x, v = _data()
    t_g, t_d = teacher
    result = train_distill(DistillConfig("1"), _cfg(epochs=6, batch_size=8, lr=2e-3), _cfg(width=4),
                           t_g, t_d, x, v, progress=False)
    k = [h["k"] for h in result.history]
    assert k[-1] < 0.7 * k[0], k


def test_edgan_cannot_be_distilled(teacher):
    x, v = _data()
    with pytest.raises(ValueError, match="second encoder"):
        train_distill(DistillConfig("2"), _cfg(variant="ed"), _cfg(width=4), *teacher, x, v, progress=False)


@pytest.mark.parametrize("channels", [1, 3])
def test_width_one_student_builds_trains_a_step_and_scores(tmp_path, channels):
    x = torch.rand(40, channels, 32, 32) * 2 - 1
    det = detectors.make("kdgan", width=1, epochs=1, batch_size=32, teacher_budget="quick", teacher_width=2)
    det.fit(x[:32], x[32:])
    assert len(det.history_) == 2  # one epoch per step, one step each
    scores = det.decision_function(x)
    assert scores.shape == (40,) and np.isfinite(scores).all() and scores.std() > 0
    det.save(tmp_path / "s")
    loaded = detectors.load(tmp_path / "s")
    np.testing.assert_allclose(loaded.decision_function(x), scores, rtol=1e-6)
    # u=1 keeps the 256-d latent, whose three 4x4 layers dominate: about 1/100 of the teacher
    teacher_params = sum(p.numel() for p in Generator(channels, 64).parameters())
    assert teacher_params / sum(p.numel() for p in loaded.generator_.parameters()) > 100


def test_teacher_cache_trains_one_teacher_per_data(tmp_path, monkeypatch):
    x, v = _data()
    fits = []
    real_fit = EDEGANDetector.fit

    def counting_fit(self, *args, **kw):
        fits.append(self.get_params()["width"])
        return real_fit(self, *args, **kw)

    monkeypatch.setattr(EDEGANDetector, "fit", counting_fit)
    kw = {"width": 1, "epochs": 1, "batch_size": 32, "teacher_budget": "quick", "teacher_width": 2}
    ctx = RunContext(teacher_cache=tmp_path)
    a = detectors.make("kdgan", structure="1", **kw).configure(ctx).fit(x, v)
    b = detectors.make("kdgan", structure="2", **kw).configure(ctx).fit(x, v)
    assert fits == [2], "the second student reuses the cached teacher"
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 1
    np.testing.assert_allclose(a.teacher_.decision_function(x), b.teacher_.decision_function(x), rtol=1e-6)
    detectors.make("kdgan", **kw).configure(ctx).fit(x[:20], v)  # other images: another teacher
    assert fits == [2, 2]


def test_a_teacher_another_process_is_training_defers_a_student_that_asks(tmp_path):
    """Inside `defer_busy_fits` (a benchmark or sweep with other work to do) a student whose
    teacher is held by another process raises FitBusy at once; once free it trains it."""
    from noveltykit.detectors.fit_cache import FitBusy, defer_busy_fits
    from noveltykit.fileio import file_lock
    x, v = _data()
    kw = {"width": 1, "epochs": 1, "batch_size": 32, "teacher_budget": "quick", "teacher_width": 2}
    student = lambda: detectors.make("kdgan", **kw).configure(RunContext(teacher_cache=tmp_path))  # noqa: E731
    student().fit(x, v)
    (teacher,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    shutil.rmtree(teacher)  # as if another process were training it now
    def deferring_fit():
        with defer_busy_fits():
            return student().fit(x, v)
    with file_lock(tmp_path / f".{teacher.name}.lock"), pytest.raises(FitBusy, match="teacher"):
        returns_within(deferring_fit)
    assert not teacher.exists()
    student().fit(x, v)
    assert teacher.is_dir(), "trained once the lock was free"


def test_teacher_from_a_saved_detector(tmp_path):
    x, v = _data()
    teacher = detectors.make("ede-gan", width=2, epochs=1, batch_size=32).fit(x, v)
    teacher.save(tmp_path / "t")
    kw = {"width": 1, "epochs": 1, "batch_size": 32, "teacher_dir": str(tmp_path / "t")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning that the teacher saw other images
        warnings.filterwarnings("ignore", message=".*normal validation images score above")  # a small v
        student = detectors.make("kdgan", **kw).fit(x, v)
    np.testing.assert_allclose(student.teacher_.decision_function(x), teacher.decision_function(x), rtol=1e-6)
    with pytest.warns(UserWarning, match="other images"):
        detectors.make("kdgan", **kw).fit(x[:20], v)
    with pytest.raises(ValueError, match="channels|shape"):
        detectors.make("kdgan", **kw).fit(torch.rand(20, 3, 32, 32) * 2 - 1)
    knn = detectors.make("knn").fit(x, v)
    knn.save(tmp_path / "k")
    with pytest.raises(ValueError, match="must be a saved ede-gan"):
        detectors.make("kdgan", **{**kw, "teacher_dir": str(tmp_path / "k")}).fit(x, v)


def test_teacher_left_untouched_by_distillation(tmp_path):
    x, v = _data()
    teacher = detectors.make("ede-gan", width=2, epochs=1, batch_size=32).fit(x, v)
    before = copy.deepcopy(teacher.generator_.state_dict())
    teacher.save(tmp_path / "t")
    detectors.make("kdgan", structure="4", width=1, epochs=1, batch_size=32,
                   teacher_dir=str(tmp_path / "t")).fit(x, v)
    assert _same(detectors.load(tmp_path / "t").generator_.state_dict(), before)


def test_students_default_to_the_student_preset_and_teachers_to_the_default_one():
    student = detectors.make("kdgan", width=2)
    assert student.get_params()["preset"] == "student"
    assert student.config(1).lr == pytest.approx(2e-3) and student.config(1).norm == "instance"
    assert student.teacher_params()["preset"] == "default"
    assert detectors.make("ede-gan").config(1).lr == pytest.approx(2e-4)
    assert detectors.make("kdgan", preset="default").config(1).lr == pytest.approx(2e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_distillation_and_cpu_scoring_agree(tmp_path):
    x = torch.rand(40, 1, 32, 32) * 2 - 1
    det = detectors.make("kdgan", structure="p24", width=1, epochs=1, batch_size=16, teacher_budget="quick",
                         teacher_width=2).configure(RunContext(device="cuda")).fit(x[:32], x[32:])
    gpu_scores = det.decision_function(x)
    assert next(det.generator_.parameters()).is_cuda and det.teacher_.context.device == "cuda"
    det.save(tmp_path / "s")
    cpu = detectors.load(tmp_path / "s")  # a loaded model runs on the CPU unless configured
    np.testing.assert_allclose(cpu.decision_function(x), gpu_scores, rtol=1e-3, atol=1e-5)
