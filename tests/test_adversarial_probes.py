"""Adversarial probes (issue 14): FGSM and DeepFool against analytic answers on linear models,
then against a fitted torch detector, and `noveltykit probe` end to end."""
import json

import numpy as np
import pytest
import torch

from noveltykit import detectors
from noveltykit.cli import main
from noveltykit.probes.attacks import (clip_to_range, deepfool, detector_decision, fgsm, perturbation_norms,
                                         robustness)

from conftest import make_blobs_dataset, write_folder_dataset


def _linear(seed=0, shape=(1, 4, 4)):
    """A binary linear f(x) = w.x + b on images, and images on both sides of its boundary."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(int(np.prod(shape)), generator=g, dtype=torch.float64)
    x = torch.randn(12, *shape, generator=g, dtype=torch.float64)
    middle = (x.flatten(1) @ w).sort().values[len(x) // 2 - 1:len(x) // 2 + 1]
    b = -float(middle.mean())  # half the images on each side, none on the boundary

    def f(images):
        return images.flatten(1) @ w + b
    return f, w, x


def test_deepfool_finds_the_analytic_minimal_perturbation_of_a_linear_classifier():
    f, w, x = _linear()
    overshoot = 0.02
    res = deepfool(f, x, overshoot=overshoot)
    distance = f(x).abs() / w.norm()  # |f(x)| / ||w||: the distance to the hyperplane
    assert res.flipped.all() and (res.iterations == 1).all(), "a linear f is crossed in one step"
    assert (res.label_before == (f(x) > 0).long()).all() and (res.label_after != res.label_before).all()
    l2, _ = perturbation_norms(res.perturbation)
    np.testing.assert_allclose(l2 / (1 + overshoot), distance, rtol=1e-2)
    cosine = res.perturbation.flatten(1) @ w / (l2 * w.norm())
    np.testing.assert_allclose(cosine.abs(), 1.0, rtol=1e-6)  # parallel to w ...
    assert (torch.sign(cosine) == -torch.sign(f(x))).all()  # ... and towards the boundary
    assert ((f(x + res.perturbation) > 0) != (f(x) > 0)).all()


def test_deepfool_reports_images_it_cannot_flip():
    _, _, x = _linear()

    def flat(images):  # novel everywhere, with a zero gradient: no step can help
        return images.flatten(1).sum(1) * 0 + 1.0
    res = deepfool(flat, x, max_iter=5)
    assert len(res.flipped) == len(x) and not res.flipped.any()
    assert (res.perturbation == 0).all()
    rob = robustness(res.perturbation, x, res.flipped)
    assert rob == {"rho_adv": None, "rho_adv_normalised": None, "n": len(x), "n_flipped": 0}


def test_fgsm_perturbation_has_max_norm_eps_exactly():
    f, w, x = _linear(shape=(3, 8, 8))
    w[::7] = 0  # pixels with no gradient do not move
    eps = 0.07
    res = fgsm(f, x, eps)
    r = res.perturbation
    eps_t = torch.tensor(eps, dtype=r.dtype)
    assert (perturbation_norms(r)[1] == eps_t).all()
    nonzero = r.flatten(1)[:, w != 0]
    assert (nonzero.abs() == eps_t).all(), "every pixel with a gradient moves by exactly +-eps"
    assert (r.flatten(1)[:, w == 0] == 0).all()
    # each image steps towards the other side: normal ones up, novel ones down
    change = f(x + r) - f(x)
    assert ((change > 0) == (f(x) <= 0)).all()
    big = fgsm(f, x, 10.0)  # unclipped (fgsm itself never clips): far enough to flip every image
    assert big.flipped.all() and big.perturbation.abs().max() == 10.0


def test_clip_to_range_keeps_images_valid_and_retakes_decisions():
    f, _, x = _linear()
    x = x.clamp(-1, 1)
    res = clip_to_range(f, x, fgsm(f, x, 0.5))
    x_adv = x + res.perturbation
    assert x_adv.min() >= -1 and x_adv.max() <= 1
    assert (res.label_after == (f(x_adv) > 0).long()).all()
    assert (res.flipped == (res.label_after != res.label_before)).all()


def test_multiclass_deepfool_flips_a_linear_softmax_classifier_by_the_nearest_boundary():
    g = torch.Generator().manual_seed(1)
    k, d = 4, 10
    W, b = torch.randn(k, d, generator=g, dtype=torch.float64), torch.randn(k, generator=g, dtype=torch.float64)
    x = torch.randn(20, 1, 1, d, generator=g, dtype=torch.float64)

    def f(images):  # log-probabilities, as detector_decision gives for certainty
        return torch.log_softmax(images.flatten(1) @ W.T + b, 1)

    overshoot = 0.02
    res = deepfool(f, x, overshoot=overshoot)
    logits = x.flatten(1) @ W.T + b
    k0 = logits.argmax(1)
    assert res.flipped.all() and (res.label_before == k0).all()
    assert (f(x + res.perturbation).argmax(1) != k0).all()
    # the distance to the nearest boundary of class k0's region: min over k of |f_k - f_k0| / ||W_k - W_k0||
    rows = torch.arange(len(x))
    gaps = (logits - logits[rows, k0][:, None]).abs() / (W[None] - W[k0][:, None]).norm(dim=2)
    gaps[rows, k0] = float("inf")
    nearest = gaps.min(1).values
    l2, _ = perturbation_norms(res.perturbation)
    assert (l2 <= nearest * (1 + overshoot) + 1e-6).all()
    assert (l2 >= nearest * (1 - 1e-6)).all(), "no flip is shorter than the distance to the region's edge"
    fg = fgsm(f, x, 0.05)  # multi-class FGSM raises the loss of the predicted class
    before = torch.nn.functional.cross_entropy(f(x), k0, reduction="none")
    after = torch.nn.functional.cross_entropy(f(x + fg.perturbation), k0, reduction="none")
    assert (after > before).all()


@pytest.fixture(scope="module")
def fitted_ae():
    ds = make_blobs_dataset(n_train=40, n_test=10, n_classes=2, channels=1, size=32)
    normal = ds.train_x[ds.train_y == 0]
    det = detectors.make("ae", epochs=3, batch_size=8, hidden=16).fit(normal[:32], normal[32:])
    return det, ds


def test_attacks_on_a_fitted_detector_really_cross_its_threshold(fitted_ae):
    det, ds = fitted_ae
    x = torch.as_tensor(ds.test_x[::2]).float() / 127.5 - 1  # 5 normal, 5 novel
    f = detector_decision(det)
    np.testing.assert_allclose(f(x).detach().numpy() + det.threshold_, det.decision_function(x), rtol=1e-5)
    side = det.predict(x).astype(bool)
    for res in (deepfool(f, x, bounds=(-1, 1)), clip_to_range(f, x, fgsm(f, x, 0.2))):
        assert res.perturbation.shape == x.shape and len(res.flipped) == len(x)
        x_adv = x + res.perturbation
        assert x_adv.min() >= -1 and x_adv.max() <= 1
        after = det.decision_function(x_adv) > det.threshold_
        assert res.flipped.any()
        assert (after[res.flipped.numpy()] != side[res.flipped.numpy()]).all(), "a flip is a flip of predict"
        assert (after[~res.flipped.numpy()] == side[~res.flipped.numpy()]).all()
    rob = robustness(res.perturbation, x, res.flipped)
    assert rob["n"] == len(x) and rob["n_flipped"] == int(res.flipped.sum()) and rob["rho_adv"] > 0
    with pytest.raises(ValueError, match="ae has no classifier of the normal classes"):
        detector_decision(det, target="class")


def test_a_detector_without_gradients_is_refused(fitted_ae):
    _, ds = fitted_ae
    knn = detectors.make("knn", k=2).fit(ds.train_x[ds.train_y == 0])
    with pytest.raises(ValueError, match="knn: adversarial probes need a differentiable detector"):
        detector_decision(knn)

    def no_grad_f(images):
        with torch.no_grad():
            return images.flatten(1).sum(1)
    with pytest.raises(ValueError, match="no gradient"):
        fgsm(no_grad_f, torch.zeros(2, 1, 4, 4), 0.1)


def _write_folder(root, rng):
    write_folder_dataset(root, rng, counts=(24, 8, 8), shape=(32, 32))


def test_probe_command_writes_consistent_results(tmp_path, capsys):
    from noveltykit.data import load_dataset

    root = tmp_path / "imgs"
    _write_folder(root, np.random.default_rng(0))
    ds = load_dataset(f"folder:{root}", progress=False)
    det = detectors.make("ae", epochs=2, batch_size=8, hidden=16).fit(ds.train_x)
    det.save(tmp_path / "model")
    out = tmp_path / "probe"
    args = ["probe", "--model", str(tmp_path / "model"), "--dataset", f"folder:{root}", "--class", "normal",
            "--n", "6", "--out", str(out)]
    assert main([*args, "--attack", "deepfool"]) == 0
    assert "decisions flipped" in capsys.readouterr().out
    record = json.loads((out / "probe.json").read_text())
    rows = record["rows"]
    assert record["attack"] == "deepfool" and record["n"] == len(rows) == 6
    assert sum(r["is_novel"] for r in rows) == 3, "half normal, half novel"
    assert record["n_flipped"] == sum(r["flipped"] for r in rows)
    for r in rows:
        assert r["flipped"] == ((r["score_before"] > r["threshold"]) != (r["score_after"] > r["threshold"]))
        assert r["threshold"] == det.threshold_ and r["linf"] <= r["l2"] + 1e-9
    # the scores in the file are the saved detector's own scores of those test images
    before = det.decision_function(ds.test_x[[r["index"] for r in rows]])
    np.testing.assert_allclose([r["score_before"] for r in rows], before, rtol=1e-6)
    flipped_l2 = [r["l2"] for r in rows if r["flipped"]]
    if flipped_l2:
        assert record["rho_adv"] == pytest.approx(np.mean(flipped_l2))
    md = (out / "probe.md").read_text()
    assert f"flipped: {record['n_flipped']} of 6" in md and md.count("\n| ") == 1 + 6
    assert (out / "probe.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert main([*args, "--attack", "fgsm", "--eps", "0.1"]) == 0
    record = json.loads((out / "probe.json").read_text())
    assert record["attack"] == "fgsm" and record["params"] == {"eps": 0.1}
    assert all(r["linf"] <= 0.1 + 1e-6 for r in record["rows"])
    assert not list(out.glob(".*.part")), "no temp files left behind"

    knn = detectors.make("knn", k=2).fit(ds.train_x)
    knn.save(tmp_path / "knn")
    capsys.readouterr()
    assert main(["probe", "--model", str(tmp_path / "knn"), "--attack", "fgsm", "--dataset", f"folder:{root}",
                 "--class", "normal", "--out", str(tmp_path / "p2")]) == 2
    assert "not one" in capsys.readouterr().err and not (tmp_path / "p2").exists()


def test_probe_help_documents_both_attacks(capsys):
    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "fgsm: one fast-gradient" in text and "deepfool: repeated steps to the nearest boundary" in text


def test_certaintys_predicted_class_can_be_attacked():
    ds = make_blobs_dataset(n_train=40, n_test=10, n_classes=3, channels=1, size=32)
    normal = ds.train_y < 2
    det = detectors.make("certainty", epochs=2, batch_size=8, width=4).fit(ds.train_x[normal], y=ds.train_y[normal])
    x = torch.as_tensor(ds.test_x[::3]).float() / 127.5 - 1
    res = deepfool(detector_decision(det, target="class"), x, bounds=(-1, 1))
    model = det.scorer().eval()
    with torch.no_grad():
        before, after = model(x).argmax(1), model(x + res.perturbation).argmax(1)
    assert (res.label_before == before).all() and res.flipped.any()
    assert (after[res.flipped] != before[res.flipped]).all() and (after == res.label_after).all()
