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


TEACHER_WIDTH = 64  # u of the EDE-GAN teacher


def profile_against_teacher(method: str, width: int, channels: int
                            ) -> list[tuple[str, int, int, float | None, float | None]]:
    """`profile_gan`'s rows with how many times the teacher's (u=64) parameters and MACs are
    this width's: (network, parameters, MACs, teacher/this params, teacher/this MACs); the
    ratios are None for the teacher's own width."""
    rows = profile_gan(method, width, channels)
    if width == TEACHER_WIDTH:
        return [(name, params, macs, None, None) for name, params, macs in rows]
    teacher = profile_gan(method, TEACHER_WIDTH, channels)
    return [(name, params, macs, t_params / params, t_macs / macs)
            for (name, params, macs), (_, t_params, t_macs) in zip(rows, teacher)]
