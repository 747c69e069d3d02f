import pytest
import torch

from noveltykit.nets.dcgan import Discriminator, Encoder, Generator
from noveltykit.nets.profile import count_macs, count_params


@pytest.mark.parametrize("width", [1, 2, 8, 64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_shapes(width, channels, norm):
    x = torch.rand(2, channels, 32, 32) * 2 - 1
    g = Generator(channels, width, norm=norm)
    out = g(x)
    assert out.z1.shape == (2, 256, 1, 1) and out.z2.shape == (2, 256, 1, 1)
    assert out.x_hat.shape == x.shape and out.x_hat.abs().max() <= 1  # tanh output
    logits, feats = Discriminator(channels, width, norm=norm)(x)
    assert logits.shape == (2,) and feats.shape == (2, 4 * width, 4, 4)
    assert Generator(channels, width, norm=norm, second_encoder=False)(x).z2 is None
    widths = [m.out_channels for m in g.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [width, 2 * width, 4 * width, 256]  # every layer's width follows u


def test_bad_construction():
    with pytest.raises(ValueError, match="width"):
        Encoder(3, 0)
    with pytest.raises(ValueError, match="channels"):
        Encoder(2, 8)
    with pytest.raises(ValueError, match="norm"):
        Generator(3, 8, norm="layer")


def test_teacher_is_the_papers_size():
    """P-KDGAN Table V: the teacher has 5.12M parameters and 56M FLOPs (multiply-accumulates)."""
    g = Generator(3, 64)
    assert count_params(g) == pytest.approx(5.12e6, rel=0.002)
    assert count_macs(g, (3, 32, 32)) == pytest.approx(56e6, rel=0.01)


def test_macs_counted_by_hand_for_one_conv():
    conv = torch.nn.Conv2d(3, 4, 4, 2, 1, bias=False)  # 16x16 output, 3*16 MACs per output value
    assert count_macs(conv, (3, 32, 32)) == 4 * 16 * 16 * 3 * 16


def test_dcgan_networks_grow_a_block_at_64_and_stay_the_papers_at_32():
    import numpy as np

    from noveltykit import detectors
    g32, g64 = Generator(1, 4), Generator(1, 4, size=64)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in g32.encoder.body) == 3
    assert sum(isinstance(m, torch.nn.Conv2d) for m in g64.encoder.body) == 4
    out = g64(torch.zeros(2, 1, 64, 64))
    assert out.x_hat.shape == (2, 1, 64, 64) and out.z1.shape == out.z2.shape == (2, 256, 1, 1)
    assert Discriminator(3, 4, size=64)(torch.zeros(2, 3, 64, 64))[0].shape == (2,)
    x = np.random.default_rng(0).integers(0, 256, (24, 1, 64, 64), dtype=np.uint8)
    det = detectors.make("ede-gan", width=4, epochs=1, batch_size=8).fit(x)
    assert det.decision_function(x[:3]).shape == (3,)
    with pytest.raises(ValueError, match="32, 64, 128"):
        detectors.make("ede-gan", width=4, epochs=1).fit(np.zeros((8, 1, 48, 48), np.uint8))
