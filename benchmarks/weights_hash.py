"""sha256 of the weights that fixed small training runs end with: a refactor of the training code
must leave them unchanged on the same machine and kernels.

    python benchmarks/weights_hash.py > before.txt     # on the old commit
    python benchmarks/weights_hash.py > after.txt      # on the new one; then: diff before.txt after.txt

Runs three GAN configurations (the paper's, the default preset, EDÊ-GAN with the stabilisers) and
one P-KDGAN-II-23 distillation, each on 64 seeded template images, one thread. The hashes depend
on the CPU's float kernels, so they are compared between commits on one machine, never stored.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import template_images  # noqa: E402

from noveltykit.distill.distillation import DistillConfig, train_distill  # noqa: E402
from noveltykit.train.gan import GANConfig, train_gan  # noqa: E402

GAN_RUNS = {
    "ede paper": dict(variant="ede", norm="batch", lr=2e-3),
    "ede default": dict(variant="ede", norm="instance", lr=2e-4, ema_decay=0.99),
    "edhat stabilised": dict(variant="edhat", norm="instance", lr=2e-4, grad_clip=1.0, prob_eps=0.01,
                             spectral_norm=True, select="val"),
}


def digest(*modules: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for m in modules:
        for k, v in m.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def main():
    torch.set_num_threads(1)
    x = template_images(64, seed=0)
    x_train, x_val = x[:48], x[48:]
    base = dict(width=8, epochs=3, batch_size=8, channels=1)
    for name, over in GAN_RUNS.items():
        r = train_gan(GANConfig(**base, **over), x_train, x_val, progress=False)
        print(f"{name}: {digest(r.generator, r.discriminator)} selected {r.selected_epoch} "
              f"last loss_g {r.history[-1]['loss_g']!r}")
    teacher = train_gan(GANConfig(**base, variant="ede", norm="instance", lr=2e-4), x_train, x_val, progress=False)
    student_cfg = GANConfig(**{**base, "width": 4, "epochs": 2}, variant="ede", norm="instance", lr=2e-3,
                            ema_decay=0.99)
    d = train_distill(DistillConfig("p23"), student_cfg, GANConfig(**base, variant="ede", norm="instance"),
                      teacher.generator, teacher.discriminator, x_train, x_val, progress=False)
    print(f"distill p23: student {digest(d.student, d.student_discriminator)} teacher "
          f"{digest(d.teacher, d.teacher_discriminator)} last k {d.history[-1]['k']!r}")


if __name__ == "__main__":
    main()
