"""The frozen ONNX Runtime path of the pretrained features against the eager torch reference:
equal within FEATURE_TOLERANCE (this file runs on all three kernel paths, `.ci/kernels`), keyed
apart in caches, and a model fitted on one engine scores the same on the other."""
import numpy as np
import pytest

from noveltykit import detectors
from noveltykit.detectors.context import RunContext
from noveltykit.features.extractor import FEATURE_TOLERANCE, FeatureExtractor, onnxruntime_version

from conftest import needs_weights, smooth_colour_images

pytestmark = [needs_weights, pytest.mark.skipif(onnxruntime_version() is None, reason="onnxruntime not installed")]


def _images(n=12, size=40, seed=0):
    return smooth_colour_images(n, size, seed)


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


def test_one_run_per_thread_gives_the_features_of_one_run_on_all_threads(monkeypatch):
    import torch
    x = _images(40, size=32)  # 10 calls of 4: enough for the parallel runs
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        parallel = FeatureExtractor(size=64, engine="onnxruntime")(x)
        torch.set_num_threads(1)
        single = FeatureExtractor(size=64, engine="onnxruntime")(x)
    finally:
        torch.set_num_threads(threads)
    assert np.abs(parallel - single).max() <= FEATURE_TOLERANCE * np.abs(single).max()
    np.testing.assert_array_equal(parallel[:4], FeatureExtractor(size=64, engine="onnxruntime")(x[:4]))


def test_bf16_falls_back_to_fp32_with_a_warning_where_the_cpu_emulates_it(monkeypatch):
    from noveltykit.features import extractor as extractor_module
    monkeypatch.setattr(extractor_module, "native_bf16_cpu", lambda: False)
    monkeypatch.setattr(extractor_module, "_bf16_warned", False)
    x = _images(6, size=32)
    with pytest.warns(RuntimeWarning, match="no native bf16"):
        bf16 = FeatureExtractor(size=64, precision="bf16")
        assert bf16.resolved_engine == "onnxruntime" and "precision" not in bf16.key()
    np.testing.assert_array_equal(bf16(x), FeatureExtractor(size=64)(x))
    with pytest.raises(ValueError, match="precision must be one of"):
        FeatureExtractor(precision="fp16")


def test_bf16_features_are_keyed_apart_and_close_to_fp32(monkeypatch):
    from noveltykit.features import extractor as extractor_module
    monkeypatch.setattr(extractor_module, "native_bf16_cpu", lambda: True)  # runs (slowly) where emulated
    x = _images(20, size=32)
    bf16, fp32 = FeatureExtractor(size=64, precision="bf16"), FeatureExtractor(size=64, engine="torch")
    assert bf16.resolved_engine == "torch-bf16"
    assert bf16.key()["precision"] == "bf16" and bf16.key() != fp32.key()
    f16, f32 = bf16(x), fp32(x)
    assert f16.shape == f32.shape and f16.dtype == np.float32
    cosine = (f16 * f32).sum(1) / np.linalg.norm(f16, axis=1) / np.linalg.norm(f32, axis=1)
    assert cosine.min() > 0.9 and np.abs(f16 - f32).max() > FEATURE_TOLERANCE * np.abs(f32).max()  # bf16 ran
    np.testing.assert_array_equal(FeatureExtractor(size=64, precision="bf16")(x[:3]), f16[:3])  # padded calls


def test_the_feature_detectors_take_and_keep_the_precision(tmp_path):
    det = detectors.make("feat-knn", size=64, k=2, precision="bf16")
    assert det.get_params()["precision"] == "bf16" and det.extractor().precision == "bf16"
    with pytest.raises(ValueError, match="precision must be one of"):
        detectors.make("feat-knn", precision="half")


def test_feature_detectors_keep_uint8_images_and_score_them_as_their_float_scaling(monkeypatch):
    from noveltykit.data.images import to_float
    from noveltykit.detectors.pretrained import FeatureDetector
    seen = []
    original = FeatureDetector.features
    monkeypatch.setattr(FeatureDetector, "features", lambda self, x: seen.append(x.dtype) or original(self, x))
    x = _images(16, size=32, seed=2)
    det = detectors.make("feat-knn", size=64, k=2).fit(x[:12])
    assert set(map(str, seen)) == {"torch.uint8"}  # never made float32 as a whole
    np.testing.assert_allclose(det.decision_function(to_float(x[12:])), det.decision_function(x[12:]), rtol=1e-6)
