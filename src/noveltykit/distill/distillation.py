"""Knowledge distillation between two EDE-GANs (P-KDGAN §III.C-E, Eq. 7-9, Algorithm 1).

Distillation loss  K_l = w1 |z1 - z1'|_2 + wx |x_hat - x_hat'|_1 + w2 |z2 - z2'|_2
(teacher outputs unprimed, student primed; |.|_2 as mean squared error like L_enc). K_l trains
the student only: the teacher's outputs are targets.

Structures (which of {L_g^T, L_d^T, L_g^S, L_d^S, K_l} train):
    KDGAN-1  {K_l}                          teacher frozen, student G by K_l alone
    KDGAN-2  {L_g^S, L_d^S, K_l}            teacher frozen
    KDGAN-3  {L_g^T, L_d^T, K_l}            teacher trains on its own losses, student G by K_l
    KDGAN-4  {L_g^T, L_d^T, L_g^S, L_d^S, K_l}
P-KDGAN-II-23 / -24: step 1 is KDGAN-2 from a random student, step 2 continues the student's
training state (weights, moving average, optimiser moments) and the teacher with KDGAN-3 / -4.
Both steps run in one pass of the shared training loop (`train.loop`), the structure a function of
the epoch (`DistillUnit.begin_epoch`), so checkpoints and resume work across the step boundary.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..nets.dcgan import Discriminator, Generator, GeneratorOutput
from ..train.gan import GANConfig, loop_config, subset, validation_loss
from ..train.gan_unit import GAN
from ..train.loop import train_loop


@dataclass(frozen=True)
class Structure:
    name: str
    teacher_trains: bool  # L_g^T, L_d^T in the set
    student_adversarial: bool  # L_g^S, L_d^S in the set (K_l always is)


STRUCTURES = {
    "1": Structure("KDGAN-1", teacher_trains=False, student_adversarial=False),
    "2": Structure("KDGAN-2", teacher_trains=False, student_adversarial=True),
    "3": Structure("KDGAN-3", teacher_trains=True, student_adversarial=False),
    "4": Structure("KDGAN-4", teacher_trains=True, student_adversarial=True),
}
# A plan is the structure of each step, in order.
PLANS = {"1": ("1",), "2": ("2",), "3": ("3",), "4": ("4",), "p23": ("2", "3"), "p24": ("2", "4")}
PLAN_NAMES = {"1": "KDGAN-1", "2": "KDGAN-2", "3": "KDGAN-3", "4": "KDGAN-4",
              "p23": "P-KDGAN-II-23", "p24": "P-KDGAN-II-24"}


def parse_structure(value) -> str:
    """'2', 2, 'kdgan-2', 'KDGAN2' -> '2'; 'p23', 'P-KDGAN-II-23' -> 'p23'."""
    key = str(value).lower().replace("_", "-")
    for prefix in ("p-kdgan-ii-", "pkdgan-ii-", "p-kdgan-", "pkdgan"):
        if key.startswith(prefix):
            key = "p" + key[len(prefix):].lstrip("-")
    key = key.removeprefix("kdgan").lstrip("-")
    if key not in PLANS:
        raise ValueError(f"unknown distillation structure {value!r}; choose one of "
                         f"{', '.join(f'{k} ({v})' for k, v in PLAN_NAMES.items())}")
    return key


@dataclass
class DistillConfig:
    structure: str = "p23"
    w1: float = 1.0
    wx: float = 1.0
    w2: float = 1.0

    def __post_init__(self):
        self.structure = parse_structure(self.structure)
        for name in ("w1", "wx", "w2"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    @property
    def plan(self) -> tuple[str, ...]:
        return PLANS[self.structure]


def distillation_loss(cfg: DistillConfig, teacher: GeneratorOutput, student: GeneratorOutput
                      ) -> dict[str, torch.Tensor]:
    """K_l and its terms; gradients reach the student only."""
    k1 = (teacher.z1.detach() - student.z1).pow(2).mean()
    kx = (teacher.x_hat.detach() - student.x_hat).abs().mean()
    k2 = (teacher.z2.detach() - student.z2).pow(2).mean()
    return {"k": cfg.w1 * k1 + cfg.wx * kx + cfg.w2 * k2, "k1": k1, "kx": kx, "k2": k2}


@dataclass
class DistillResult:
    student: Generator  # the selected epoch's scoring generator, eval mode
    student_discriminator: Discriminator
    teacher: Generator  # the teacher after distillation (changed only by KDGAN-3/4)
    teacher_discriminator: Discriminator
    history: list[dict] = field(default_factory=list)
    selected_epoch: int = 0


def _check_pair(student_cfg: GANConfig, teacher_cfg: GANConfig) -> None:
    for who, c in (("student", student_cfg), ("teacher", teacher_cfg)):
        if not c.second_encoder:
            raise ValueError(f"distillation matches z1, x_hat and z2: the {who} must have a second "
                             f"encoder (ede or edhat), not {c.variant!r}")
    if student_cfg.channels != teacher_cfg.channels:
        raise ValueError(f"student has {student_cfg.channels} channels, teacher {teacher_cfg.channels}")


class DistillUnit:
    """A teacher and a student GAN, as one unit of the training loop: the structure of each epoch
    decides which of them train on which losses (the module docstring's table)."""

    loss_names = ("k", "k1", "kx", "k2", "loss_g", "loss_d", "teacher_loss_g", "teacher_loss_d")

    def __init__(self, cfg: DistillConfig, student_cfg: GANConfig, teacher_cfg: GANConfig,
                 student: GAN, teacher: GAN):
        self.cfg, self.student_cfg, self.teacher_cfg = cfg, student_cfg, teacher_cfg
        self.student, self.teacher = student, teacher
        self.structure, self.reinits = STRUCTURES[cfg.plan[0]], 0

    def begin_epoch(self, epoch: int) -> dict:
        self.structure = STRUCTURES[self.cfg.plan[epoch // self.student_cfg.epochs]]
        self.student.train()
        if self.structure.teacher_trains:
            self.teacher.train()
        else:
            self.teacher.g.eval()  # a frozen teacher: fixed weights and normalisation statistics
        self.reinits = 0
        return {"structure": self.structure.name}

    def step(self, x: torch.Tensor) -> torch.Tensor:
        structure, teacher, student = self.structure, self.teacher, self.student
        zero = torch.zeros((), device=x.device)
        t_lg, t_ld = {"g": zero}, zero
        if structure.teacher_trains:
            t_out, t_lg, t_ld = teacher.losses(x)
        else:
            with torch.no_grad():
                t_out = teacher.forward(x)
        s_lg, s_ld = {"g": zero}, zero
        if structure.student_adversarial:
            s_out, s_lg, s_ld = student.losses(x)
        else:
            s_out = student.forward(x)
        k = distillation_loss(self.cfg, t_out, s_out)
        student.update(s_lg["g"] + k["k"] if structure.student_adversarial else k["k"],
                       s_ld if structure.student_adversarial else None)
        if structure.teacher_trains:
            teacher.update(t_lg["g"], t_ld)
        return torch.stack([k["k"], k["k1"], k["kx"], k["k2"], s_lg["g"], s_ld, t_lg["g"], t_ld]).detach()

    def sync(self, losses: torch.Tensor) -> None:
        if self.structure.student_adversarial:
            self.reinits += self.student.reinit_d_if_collapsed(float(losses[5]))
        if self.structure.teacher_trains:
            self.teacher.reinit_d_if_collapsed(float(losses[7]))

    def end_epoch(self, x_val: torch.Tensor) -> dict:
        record = {"d_reinits": self.reinits,
                  "val_loss": validation_loss(self.student_cfg, self.student.scoring, x_val)}
        if self.structure.teacher_trains:
            record["teacher_val_loss"] = validation_loss(self.teacher_cfg, self.teacher.scoring, x_val)
        return record

    def scoring_module(self) -> Generator:
        return self.student.scoring

    def state(self) -> dict:
        return {"student": self.student.state(), "teacher": self.teacher.state()}

    def load_state(self, state: dict) -> None:
        self.student.load_state(state["student"])
        self.teacher.load_state(state["teacher"])


def train_distill(cfg: DistillConfig, student_cfg: GANConfig, teacher_cfg: GANConfig,
                  teacher_g: Generator, teacher_d: Discriminator, x_train: torch.Tensor,
                  x_val: torch.Tensor, *, checkpoint_dir: str | Path | None = None,
                  resume: bool = False, progress: bool = True,
                  on_epoch_end: Callable[[int, Generator], dict] | None = None) -> DistillResult:
    """Distil the trained teacher into a fresh student of `student_cfg` on normal images.

    `student_cfg.epochs` is the length of each step; the teacher trains (KDGAN-3/4) with
    `teacher_cfg`'s optimiser settings. Selection (`student_cfg.select`) uses the student's own
    normal-validation loss; `on_epoch_end(epoch, student)` adds diagnostics to the history.
    """
    _check_pair(student_cfg, teacher_cfg)
    torch.manual_seed(student_cfg.seed)
    dev = torch.device(student_cfg.device)
    x_train = subset(student_cfg, x_train).to(dev)
    teacher = GAN(teacher_cfg, dev, copy.deepcopy(teacher_g), copy.deepcopy(teacher_d))
    student = GAN(student_cfg, dev)
    comparable = {"distill": asdict(cfg), **{k: {n: v for n, v in asdict(c).items() if n != "device"}
                                              for k, c in (("student", student_cfg), ("teacher", teacher_cfg))}}
    unit = DistillUnit(cfg, student_cfg, teacher_cfg, student, teacher)
    result = train_loop(unit, loop_config(student_cfg, epochs=student_cfg.epochs * len(cfg.plan)), x_train,
                        x_val, config=comparable, checkpoint_dir=checkpoint_dir, resume=resume,
                        progress=progress, monitor=on_epoch_end)
    return DistillResult(student.scoring, student.d, teacher.scoring.eval(), teacher.d, result.history,
                         result.selected_epoch)
