"""The frozen ONNX Runtime path of the pretrained features against the eager torch reference:
equal within FEATURE_TOLERANCE (this file runs on all three kernel paths, `.ci/kernels`), keyed
apart in caches, and a model fitted on one engine scores the same on the other."""
import numpy as np
import pytest

from noveltykit import detectors
from noveltykit.detectors.context import RunContext
from noveltykit.features.extractor import FEATURE_TOLERANCE, FeatureExtractor, onnxruntime_version

from conftest import needs_weights

pytestmark = [needs_weights, pytest.mark.skipif(onnxruntime_version() is None, reason="onnxruntime not installed")]


def _images(n=12, size=40, seed=0):
    """Smooth colour images with structure (noise alone makes every feature tiny)."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, size)
    base = np.stack([np.outer(np.sin(6 * grid + c), np.cos(4 * grid - c)) for c in range(3)])
    x = 127.5 + 100 * base[None] * rng.uniform(0.3, 1, (n, 3, 1, 1)) + rng.normal(0, 12, (n, 3, size, size))
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size, stages", [(224, "last"), (64, "4+last")])
def test_onnxruntime_features_equal_the_eager_ones(size, stages):
    x = _images()
    eager = FeatureExtractor(size=size, stages=stages, engine="torch")(x)
    frozen = FeatureExtractor(size=size, stages=stages, engine="onnxruntime")(x)
    assert frozen.shape == eager.shape and frozen.dtype == np.float32
    scale = np.abs(eager).max()
    assert scale > 0.1  # real features, not a blank image's
    assert np.abs(frozen - eager).max() <= FEATURE_TOLERANCE * scale
    # padding the last batch keeps an image's features independent of its batch, as in torch
    np.testing.assert_array_equal(FeatureExtractor(size=size, stages=stages, engine="onnxruntime")(x[:5]),
                                  frozen[:5])


def test_engines_are_keyed_apart_and_checked():
    assert "engine" not in FeatureExtractor(engine="torch").key()  # the eager key is today's: old caches serve
    assert FeatureExtractor(engine="onnxruntime").key()["engine"] == f"onnxruntime {onnxruntime_version()}"
    assert FeatureExtractor().resolved_engine == "onnxruntime"  # auto, on a CPU with ONNX Runtime
    with pytest.raises(ValueError, match="engine must be one of"):
        FeatureExtractor(engine="tensorrt")


def test_a_model_fitted_on_torch_scores_the_same_on_onnxruntime(tmp_path):
    x = _images(24, seed=1)
    det = detectors.make("feat-knn", size=64, k=2)
    det.configure(RunContext(feature_engine="torch")).fit(x[:16], x[16:20])
    det.save(tmp_path / "m")
    reference = det.decision_function(x[20:])
    loaded = detectors.load(tmp_path / "m")  # the default context: auto, so ONNX Runtime here
    assert loaded.extractor().resolved_engine == "onnxruntime"
    np.testing.assert_allclose(loaded.decision_function(x[20:]), reference, rtol=1e-4, atol=1e-5)
