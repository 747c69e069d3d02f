"""Images -> patch feature maps: (N, C, h, w), one C-vector per patch of the image, for detectors
that say where the novelty is (PatchCore, PaDiM).

Each image is prepared as `FeatureExtractor` prepares it (3 channels, size x size, scaled), run
through the frozen backbone, and its maps at the requested stages are taken
(`EfficientNetLite.stage_maps`). Each stage's map is averaged over its `pool` x `pool`
neighbourhood (stride 1, so the grid keeps its size): PatchCore's local aggregation, a patch
seeing its neighbours (pool 1: none, as PaDiM). The deeper, coarser maps are resized bilinearly to
the first (finest) stage's grid and the stages concatenated along channels in network order.

Every network call sees exactly `per_call` images (the last padded with copies), as in the
extractor: a patch's features do not depend on which images came with it. Torch runs the
network (ONNX Runtime's export in the extractor pools the maps away). `graph(shape)`: the same
for float images of one shape as one traceable module (`PatchGraph`, for ONNX export).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F

from .extractor import FeatureExtractor, load_backbone


class PatchMaps:
    """Callable: images (N, C, H, W), uint8 or float in [-1, 1] -> (N, dim, h, w) float32."""

    def __init__(self, backbone: str = "efficientnet-lite0", size: int = 224, input_scaling: str = "pm1",
                 stages: str = "3+5", pool: int = 3, batch_size: int | None = None, device: str = "cpu",
                 progress: bool = False):
        if int(pool) < 1 or int(pool) % 2 == 0:
            raise ValueError(f"pool must be an odd number of patches >= 1 (1 = none), got {pool}")
        self.pool = int(pool)
        # the extractor checks the settings and prepares images; its network runs in torch
        self.extractor = FeatureExtractor(backbone, size, input_scaling, stages, batch_size, device,
                                          progress, engine="torch")

    @property
    def stages(self) -> tuple[int | str, ...]:
        return self.extractor.stages

    @property
    def dim(self) -> int:
        """Channels of a patch's vector: the stages' channels, summed."""
        return self.extractor.dim

    def _maps(self, net, x: torch.Tensor, per_call: int) -> torch.Tensor:
        return torch.cat([self.combine(net.stage_maps(x[j:j + per_call], self.stages))
                          for j in range(0, len(x), per_call)])

    def combine(self, maps: dict) -> torch.Tensor:
        """The stages' maps of a batch -> (n, dim, h, w): pooled, resized to the first's grid, joined."""
        grid = maps[self.stages[0]].shape[2:]
        parts = []
        for s in self.stages:
            m = maps[s]
            if self.pool > 1:  # padding not counted: a border patch averages its real neighbours only
                m = F.avg_pool2d(m, self.pool, stride=1, padding=self.pool // 2, count_include_pad=False)
            if m.shape[2:] != grid:
                m = F.interpolate(m, size=tuple(int(g) for g in grid), mode="bilinear", align_corners=False)
            parts.append(m)
        return torch.cat(parts, dim=1)

    def graph(self, shape: tuple[int, int, int]) -> "PatchGraph":
        """These maps for float images of `shape` (C, H, W) in [-1, 1] as one module (ONNX export)."""
        return PatchGraph(self, shape)

    def chunks(self, images, progress: bool | None = None) -> Iterator[torch.Tensor]:
        """The maps of consecutive chunks of the images, in order: (n, dim, h, w) each."""
        return self.extractor.chunks(images, self._maps, progress)

    def __call__(self, images, progress: bool | None = None) -> torch.Tensor:
        return torch.cat(list(self.chunks(images, progress)))

    def __repr__(self) -> str:
        e = self.extractor
        return (f"PatchMaps({e.backbone!r}, size={e.size}, input_scaling={e.input_scaling!r}, "
                f"stages={'+'.join(map(str, self.stages))!r}, pool={self.pool})")


class PatchGraph(torch.nn.Module):
    """`PatchMaps` for float images (N, C, H, W) in [-1, 1] of one shape as one module: the
    extractor's `InputGraph`, the backbone's stage maps, `combine` -> (N, dim, h, w) float32."""

    def __init__(self, patch_maps: PatchMaps, shape: tuple[int, int, int]):
        super().__init__()
        extractor = patch_maps.extractor
        self.prepare, self.net = extractor.input_graph(shape), load_backbone(extractor.backbone)
        self.patch_maps = patch_maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.patch_maps.combine(self.net.stage_maps(self.prepare(x), self.patch_maps.stages))
