"""An exponential moving average of a module's weights, for every unit that wants one.

After each optimiser step `update()` moves the average towards the live weights:
w_avg <- decay * w_avg + (1 - decay) * w. Buffers are averaged too (`average_buffers=True`, the
GAN's choice) or copied from the live module (`False`: for buffers that must match the live
module exactly, such as Deep SVDD's centre). Integer buffers are always copied.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, module: nn.Module, decay: float, average_buffers: bool = True):
        if not 0 < decay < 1:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)
        # (average, live) pairs built once: both share storage with the modules, which the
        # optimiser and load_state_dict update in place
        names = {n for n, _ in module.named_parameters()}
        live, avg = module.state_dict(), self.module.state_dict()
        self._pairs = [(avg[k], live[k], v.is_floating_point() and (average_buffers or k in names))
                       for k, v in live.items()]

    @torch.no_grad()
    def update(self) -> None:
        for average, live, lerp in self._pairs:
            average.lerp_(live, 1 - self.decay) if lerp else average.copy_(live)
