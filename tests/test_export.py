import sys

import numpy as np
import pytest
import torch

from noveltykit import detectors
from noveltykit.apply.export import OnnxDetector, export_onnx, read_metadata, set_threshold

from conftest import template_images

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


def test_refusals(tmp_path, monkeypatch):
    x = _images(48, 1)
    knn = detectors.make("knn").fit(x[:32], x[32:])
    with pytest.raises(ValueError, match="only generator-based detectors"):
        export_onnx(knn, tmp_path / "k.onnx")
    det = detectors.make("ede-gan", width=4, epochs=1, batch_size=16).fit(x[:32], x[32:])
    path = export_onnx(det, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="channels"):
        OnnxDetector(path).decision_function(_images(4, 3))
    monkeypatch.setitem(sys.modules, "onnx", None)  # as if not installed
    with pytest.raises(ImportError, match=r"noveltykit\[export\]"):
        export_onnx(det, tmp_path / "again.onnx")
