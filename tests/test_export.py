"""ONNX export: every exportable detector's graph scores as the detector does (ONNX Runtime
against eager, within 1e-4 relative), the threshold travels as metadata, and a detector (or a
setting) that cannot be exported says so, naming itself and the detectors that can."""
import json
import sys

import numpy as np
import pytest
import torch

from noveltykit import detectors
from noveltykit.apply.export import OnnxDetector, export_onnx, read_metadata, set_threshold
from noveltykit.cli import main
from noveltykit.detectors.base import Detector, ExportNotSupported
from noveltykit.detectors.catalog import describe
from noveltykit.detectors.context import RunContext
from noveltykit.detectors.registry import detector_class, exportable_names

from conftest import needs_weights, smooth_colour_images, template_images

pytest.importorskip("onnxruntime")


def _images(n, channels, seed=0):
    return template_images(n, channels, noise=0.2, seed=seed)


CASES = {
    "ede-gan batch norm": ("ede-gan", {"width": 4, "norm": "batch"}),
    "ede-gan instance norm": ("ede-gan", {"width": 8, "norm": "instance"}),
    "ed-gan (image score)": ("ed-gan", {"width": 4}),
    "kdgan u=1 student": ("kdgan", {"width": 1, "teacher_budget": "quick", "teacher_width": 4}),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("channels", [1, 3])
def test_onnx_runtime_scores_match_eager(case, channels, tmp_path):
    name, params = CASES[case]
    x = _images(72, channels)
    det = detectors.make(name, epochs=2, batch_size=16, **params).fit(x[:56], x[56:])
    path = export_onnx(det, tmp_path / "m.onnx")
    onnx_det = OnnxDetector(path)
    test = _images(37, channels, seed=1)  # an odd batch: the batch axis is dynamic
    eager = det.decision_function(test)
    onnx_scores = onnx_det.decision_function(test)
    np.testing.assert_allclose(onnx_scores, eager, rtol=0, atol=1e-4)
    # Scores of barely trained nets can be tiny: also demand agreement relative to their spread.
    assert np.ptp(eager) > 0 and np.abs(onnx_scores - eager).max() <= 1e-3 * np.ptp(eager)
    uint8 = ((test + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()  # pixels work too
    np.testing.assert_allclose(onnx_det.decision_function(uint8), det.decision_function(uint8), atol=1e-4)
    assert onnx_det.threshold_ == det.threshold_


# The other exportable detectors, fitted in a second or so each: (detector, parameters, channels).
# Pixel detectors and trained networks on 32x32 template images.
PIXEL_CASES = {
    "knn": ("knn", {}, 1),
    "knn max k=3": ("knn", {"k": 3, "aggregate": "max"}, 3),
    "pca": ("pca", {}, 1),
    "kde": ("kde", {}, 3),
    "ocsvm": ("ocsvm", {}, 1),
    "bayes-factor gaussian": ("bayes-factor", {"n_components": 4, "components": "1-2"}, 1),
    "bayes-factor uniform": ("bayes-factor", {"n_components": 4, "components": "1", "background": "uniform"}, 3),
    "ae": ("ae", {"epochs": 2, "hidden": 16}, 1),
    "conv-ae": ("conv-ae", {"epochs": 2, "width": 4, "code": 8}, 3),
    "dae": ("dae", {"epochs": 2, "width": 4}, 1),
    "contractive-ae dense": ("contractive-ae", {"epochs": 2, "hidden": 16}, 1),
    "contractive-ae conv": ("contractive-ae", {"epochs": 2, "encoder": "conv", "width": 4}, 3),
    "vae recon": ("vae", {"epochs": 2, "width": 4}, 1),
    "vae elbo": ("vae", {"epochs": 2, "width": 4, "score": "elbo", "samples": 3}, 3),
    "deep-svdd": ("deep-svdd", {"epochs": 2, "pretrain_epochs": 1, "width": 4}, 1),
    "gan-disc": ("gan-disc", {"epochs": 2}, 1),
    "edhat-gan": ("edhat-gan", {"width": 4, "epochs": 2, "batch_size": 16}, 1),
    "certainty": ("certainty", {"epochs": 1, "width": 4}, 3),
    "selfsup nll": ("selfsup", {"epochs": 1}, 1),
    "ensemble zscore": ("ensemble", {"members": "knn+pca+ae/epochs=1/hidden=8"}, 1),
}
# Pretrained features on structured colour images: small `size` keeps the backbone fast; a side of
# 40 at size 32 takes the antialiased shrink, of 32 at 64 the enlargement; grey images too.
FEATURE_CASES = {
    "feat-knn cosine": ("feat-knn", {"size": 32}, 3, 32),
    "feat-knn euclidean": ("feat-knn", {"size": 64, "metric": "euclidean", "k": 2}, 1, 32),
    "feat-knn flip, stage norm, imagenet, shrink": (
        "feat-knn", {"size": 32, "tta": "flip", "stage_norm": True, "stages": "4+last", "input_scaling": "imagenet"},
        3, 40),
    "feat-gauss": ("feat-gauss", {"size": 32}, 3, 32),
    "feat-ocsvm": ("feat-ocsvm", {"size": 32}, 3, 32),
    "feat-bayes": ("feat-bayes", {"size": 32, "n_components": 4, "components": "1-2"}, 3, 32),
    "feat-msc": ("feat-msc", {"size": 32, "epochs": 1, "batch_size": 8, "frozen_blocks": 14}, 3, 32),
    "feat-panda": ("feat-panda", {"size": 64, "epochs": 1, "batch_size": 8, "frozen_blocks": 14}, 1, 40),
    "patchcore": ("patchcore", {"size": 64}, 3, 32),
    "patchcore feature_dim": ("patchcore", {"size": 64, "feature_dim": 50, "coreset_ratio": 0.5}, 1, 40),
    "padim": ("padim", {"size": 64, "n_channels": 16}, 3, 32),
    "padim imagenet, shrink": ("padim", {"size": 32, "input_scaling": "imagenet"}, 1, 40),
}


def _check_parity(det, test, tmp_path):
    """ONNX Runtime's scores equal eager ones within 1e-4 relative (an absolute floor of 1e-5 of
    the largest score, for scores near 0), and within 1e-3 of their spread; the threshold and
    the detector travel as metadata. Returns the largest difference relative to the largest score."""
    path = export_onnx(det, tmp_path / "m.onnx")
    onnx_det = OnnxDetector(path)
    eager, onnx_scores = det.decision_function(test), onnx_det.decision_function(test)
    scale = np.abs(eager).max()
    np.testing.assert_allclose(onnx_scores, eager, rtol=1e-4, atol=1e-5 * scale)
    assert np.ptp(eager) > 0 and np.abs(onnx_scores - eager).max() <= 1e-3 * np.ptp(eager)
    meta = read_metadata(path)
    assert float(meta["threshold"]) == onnx_det.threshold_ == det.threshold_
    assert meta["detector"] == det.name and json.loads(meta["input_shape"]) == list(det.input_shape_)
    return float(np.abs(onnx_scores - eager).max() / scale)


@pytest.mark.parametrize("case", sorted(PIXEL_CASES))
def test_every_pixel_and_trained_detector_exports_its_scores(case, tmp_path):
    name, params, channels = PIXEL_CASES[case]
    x, labels = _images(72, channels), np.arange(72) % 3  # labels: for `certainty`, ignored by the rest
    det = detectors.make(name, **params)
    det.fit(x[:56], x[56:], y=labels[:56] if det.uses_labels else None)
    test = template_images(37, channels, noise=0.3, seed=1)  # an odd batch: the batch axis is free
    _check_parity(det, test, tmp_path)
    uint8 = ((test + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()  # pixels work too
    np.testing.assert_allclose(OnnxDetector(tmp_path / "m.onnx").decision_function(uint8),
                               det.decision_function(uint8), rtol=1e-4, atol=1e-5 * np.abs(det.decision_function(uint8)).max())


@needs_weights
@pytest.mark.parametrize("case", sorted(FEATURE_CASES))
def test_every_feature_detector_exports_backbone_and_head_in_one_graph(case, tmp_path):
    """Against the eager fp32 torch engine (the reference; ONNX Runtime's engine agrees with it
    within the extractor's FEATURE_TOLERANCE)."""
    name, params, channels, side = FEATURE_CASES[case]
    x = smooth_colour_images(40, side)[:, :channels]
    det = detectors.make(name, **params).configure(RunContext(feature_engine="torch"))
    det.fit(x[:30], x[30:])
    _check_parity(det, smooth_colour_images(13, side, seed=1)[:, :channels], tmp_path)


def test_every_exportable_detector_is_checked_here():
    """A detector that says it exports has a parity case above (a new one needs one), and
    `noveltykit detectors NAME` says whether it exports."""
    checked = {v[0] for v in (*CASES.values(), *PIXEL_CASES.values(), *FEATURE_CASES.values())}
    ours = {n for n in exportable_names() if detector_class(n).__module__.startswith("noveltykit.")}
    assert ours - checked == set()  # (other tests register detectors of their own, e.g. a knn that dies)
    assert {"knn", "pca", "ae", "vae", "feat-knn", "feat-msc"} <= set(exportable_names())
    assert any(line.startswith("  exports to ONNX: noveltykit export") for line in describe("knn"))


def test_threshold_travels_as_metadata_and_can_change(tmp_path):
    x = _images(48, 1)
    det = detectors.make("ede-gan", width=4, epochs=1, batch_size=16).fit(x[:32], x[32:])
    path = export_onnx(det, tmp_path / "m.onnx")
    meta = read_metadata(path)
    assert meta["detector"] == "ede-gan" and float(meta["threshold"]) == det.threshold_
    assert '"width": 4' in meta["params"] and meta["higher_is"] == "more novel"
    scores = OnnxDetector(path).decision_function(x)
    new = float(np.median(scores))
    set_threshold(path, new)
    moved = OnnxDetector(path)
    assert moved.threshold_ == new
    np.testing.assert_array_equal(moved.predict(x), (scores > new).astype(int))
    assert 0 < moved.predict(x).mean() < 1
    with pytest.raises(ValueError, match="finite"):
        set_threshold(path, float("nan"))


class MeanPixel(Detector):
    """A detector of this test's own (not registered) whose score is written in numpy only."""

    name = "mean-pixel"

    def _fit(self, x, x_val, y=None):
        self.mean_ = float(x.mean())

    def _score(self, x):
        return np.abs(x.mean(dim=(1, 2, 3)).numpy() - self.mean_)


REFUSALS = {  # (detector, parameters, what the message says)
    "ensemble rank": ("ensemble", {"combine": "rank"}, "combine='rank'"),
    "bayes-factor compression": ("bayes-factor", {"background": "compression", "n_components": 4, "components": "1"},
                                 "background='compression'"),
    "certainty mc dropout": ("certainty", {"epochs": 1, "width": 4, "mc_samples": 2}, "mc_samples=2"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_setting_that_cannot_be_exported_says_so(case, tmp_path):
    name, params, why = REFUSALS[case]
    x = _images(48, 1)
    det = detectors.make(name, **params)
    det.fit(x[:32], x[32:], y=np.arange(32) % 2 if det.uses_labels else None)
    with pytest.raises(ExportNotSupported, match=rf"^{name}: cannot be exported to ONNX: .*{why}.*"
                                                 r"; detectors that export: .*\bknn\b.*\bpca\b"):
        export_onnx(det, tmp_path / "k.onnx")
    assert not (tmp_path / "k.onnx").exists()


def test_refusals(tmp_path, monkeypatch):
    x = _images(48, 1)
    own = MeanPixel().fit(x[:32], x[32:])
    assert not own.exportable
    with pytest.raises(ValueError, match=r"^mean-pixel: cannot be exported to ONNX: its score is not written "
                                         r"as one graph; detectors that export: ae, .*feat-knn.*, vae$"):
        export_onnx(own, tmp_path / "k.onnx")
    det = detectors.make("ede-gan", width=4, epochs=1, batch_size=16).fit(x[:32], x[32:])
    path = export_onnx(det, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="channels"):
        OnnxDetector(path).decision_function(_images(4, 3))
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    with pytest.raises(ImportError, match=r"noveltykit\[export\]"):
        export_onnx(det, tmp_path / "again.onnx")


def test_export_command_writes_a_knn_graph_and_refuses_what_cannot_be(tmp_path, capsys):
    x = _images(60, 1)
    knn = detectors.make("knn", k=3).fit(x[:48], x[48:])
    knn.save(tmp_path / "knn")
    assert main(["export", str(tmp_path / "knn"), "--out", str(tmp_path / "knn.onnx")]) == 0
    assert "knn scores images float32 (N, C, H, W) in [-1, 1]" in capsys.readouterr().out
    test = _images(9, 1, seed=3)
    np.testing.assert_allclose(OnnxDetector(tmp_path / "knn.onnx").decision_function(test),
                               knn.decision_function(test), rtol=1e-4)
    detectors.make("ensemble", combine="rank").fit(x[:48], x[48:]).save(tmp_path / "rank")
    assert main(["export", str(tmp_path / "rank"), "--out", str(tmp_path / "rank.onnx")]) == 2
    assert "ensemble: cannot be exported to ONNX: combine='rank'" in capsys.readouterr().err
    assert not (tmp_path / "rank.onnx").exists()


@needs_weights
def test_a_large_patch_graph_says_how_many_images_a_call(tmp_path):
    """patchcore's graph holds (images, patches, bank) distances: the file says how many images a
    call should hold, and OnnxDetector calls with that many (the scores are the same either way)."""
    x = smooth_colour_images(24, 32)
    det = detectors.make("patchcore", size=64, coreset_ratio=1.0).fit(x[:20], x[20:])
    path = export_onnx(det, tmp_path / "p.onnx")
    per_call = int(read_metadata(path)["batch_size"])
    assert per_call == (1 << 26) // (64 * 20 * 64)  # an 8x8 grid, 20 images' patches in the bank
    onnx_det = OnnxDetector(path)
    np.testing.assert_allclose(onnx_det.decision_function(x), onnx_det.decision_function(x, batch_size=3), rtol=1e-6)
