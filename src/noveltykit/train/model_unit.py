"""One model trained by Adam on one loss, as a unit of the shared loop (autoencoders, VAEs, Deep
SVDD, classifiers): the unit for every trained detector that is not a GAN.

The detector hands over `loss(x, generator[, y]) -> (loss, {term: value})` (`y`: the batch's
labels, when the loop is given labels) and `val_loss(x_val) -> float`; the
unit keeps a seeded generator for the loss's own randomness (input noise, posterior samples,
random projections), saved with its state so that a resume draws the same numbers.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .ema import EMA

LossFn = Callable[[torch.Tensor, torch.Generator], tuple[torch.Tensor, dict[str, torch.Tensor]]]


class ModelUnit:
    def __init__(self, model: nn.Module, loss: LossFn, val_loss: Callable[[torch.Tensor], float],
                 loss_names: tuple[str, ...], *, lr: float, weight_decay: float = 0.0, seed: int = 0,
                 ema_decay: float = 0.0, on_epoch: Callable[[int], dict] | None = None,
                 fresh_optimizer_at: int | None = None, lr_at: Callable[[int], float] | None = None):
        self.model, self.loss, self.val_loss, self.loss_names = model, loss, val_loss, ("loss", *loss_names)
        self.lr, self.weight_decay = lr, weight_decay
        self.opt = self._new_optimizer()
        # a new Adam (no moments) from this epoch on, e.g. Deep SVDD after its pre-training phase
        self.fresh_optimizer_at = fresh_optimizer_at
        # a moving average of the weights scores, when asked for; buffers follow the live model
        self.ema = EMA(model, ema_decay, average_buffers=False) if ema_decay else None
        self.generator = torch.Generator().manual_seed(seed)
        self.on_epoch = on_epoch  # e.g. a phase change (Deep SVDD's centre after pre-training)
        self.lr_at = lr_at  # the learning rate of each epoch (a schedule); None: `lr` throughout

    def _new_optimizer(self) -> torch.optim.Adam:
        return torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    def begin_epoch(self, epoch: int) -> dict:
        self.model.train()
        if epoch == self.fresh_optimizer_at:  # before the epoch's steps; a resume past it loads its state
            self.opt = self._new_optimizer()
        record = {}
        if self.lr_at is not None:  # set every epoch, so a resume sets it too
            record["lr"] = self.lr_at(epoch)
            for group in self.opt.param_groups:
                group["lr"] = record["lr"]
        return {**record, **(self.on_epoch(epoch) if self.on_epoch is not None else {})}

    def step(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        loss, terms = self.loss(x, self.generator) if y is None else self.loss(x, self.generator, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.ema is not None:
            self.ema.update()
        return torch.stack([loss, *(terms[n] for n in self.loss_names[1:])]).detach()

    def sync(self, losses: torch.Tensor) -> None:
        pass

    def end_epoch(self, x_val: torch.Tensor) -> dict:
        self.model.eval()
        with torch.no_grad():
            return {"val_loss": float(self.val_loss(x_val))}

    def scoring_module(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def state(self) -> dict:
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                 "generator": self.generator.get_state()}
        if self.ema is not None:
            state["ema"] = self.ema.module.state_dict()
        return state

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.generator.set_state(state["generator"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"])
