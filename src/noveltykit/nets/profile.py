"""Parameter and multiply-accumulate counts, by torch's own FLOP counter (MACs = FLOPs / 2)."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@torch.no_grad()
def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """MACs of one forward pass on one image of `input_shape` (C, H, W), in eval mode."""
    was_training = module.training
    module.eval()
    with FlopCounterMode(display=False) as counter:
        module(torch.zeros(1, *input_shape))
    module.train(was_training)
    return counter.get_total_flops() // 2


def profile_gan(method: str, width: int, channels: int) -> list[tuple[str, int, int]]:
    """(network, parameters, MACs per image) for a GAN detector's generator and discriminator."""
    from .dcgan import Discriminator, Generator

    second_encoder = method != "ed-gan"
    shape = (channels, 32, 32)
    g = Generator(channels, width, second_encoder=second_encoder)
    d = Discriminator(channels, width)
    return [("generator", count_params(g), count_macs(g, shape)),
            ("discriminator", count_params(d), count_macs(d, shape))]
