"""A wide residual network (Zagoruyko & Komodakis 2016), the classifier GEOM and GOAD train on
CIFAR-10 and Fashion-MNIST (WRN-10-4): pre-activation basic blocks in three groups of widths
16k, 32k, 64k (k = `widen`), (depth - 4) / 6 blocks a group, strides 1, 2, 2, then global average
pooling and one linear layer whose outputs are split into heads. A plain `nn.Module`."""
from __future__ import annotations

import torch
from torch import nn


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, dropout: float):
        super().__init__()
        self.bn1, self.bn2 = nn.BatchNorm2d(c_in), nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.shortcut = (nn.Conv2d(c_in, c_out, 1, stride, 0, bias=False)
                         if stride != 1 or c_in != c_out else None)

    def forward(self, x):
        a = torch.relu(self.bn1(x))
        out = self.conv2(self.drop(torch.relu(self.bn2(self.conv1(a)))))
        return out + (self.shortcut(a) if self.shortcut is not None else x)


class WideResNet(nn.Module):
    def __init__(self, channels: int, heads: tuple[int, ...], depth: int = 10, widen: int = 4,
                 dropout: float = 0.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 (10, 16, 22, 28, ...), got {depth}")
        if widen < 1:
            raise ValueError(f"widen must be >= 1, got {widen}")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        layers: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, 1, 1, bias=False)]
        for group, stride in zip(range(3), (1, 2, 2)):
            for i in range(n):
                c_in = widths[group] if i == 0 else widths[group + 1]
                layers.append(_Block(c_in, widths[group + 1], stride if i == 0 else 1, dropout))
        layers += [nn.BatchNorm2d(widths[3]), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.heads = tuple(int(h) for h in heads)
        self.fc = nn.Linear(widths[3], sum(self.heads))
        # Feed the convolutions channels-last: on the CPU their kernels run faster on it (WRN-10-1
        # on one AMD EPYC thread: scoring x1.4-1.6, training x1.3-1.5; benchmarks/wrn_layout_speed.py).
        # Only the input is converted; the weights stay in the default layout, as saved.
        self.channels_last = True

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The logits of each head."""
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return list(torch.split(self.fc(self.features(x)), self.heads, dim=1))
