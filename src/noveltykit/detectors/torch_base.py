"""The bases of every detector whose model is made of `nn.Module`s.

`TorchDetector` does what every torch detector needs, once: modules saved under their names
(`_modules`, `_build_modules`), the history and selected epoch of the fit, eval-mode batched
scoring (an image's score never depends on its batch) and its differentiable form for the probes,
the RunContext's device with the CPU as fallback where that GPU is missing. The P-KDGAN GAN
detectors build on it with their own training (`train.gan`).

`LoopTrainedDetector` trains one network with the shared loop (`train.loop`): seeding, device,
the loop call, selection, history, once; a subclass gives the network (`_build`) and the unit that
trains it (`_unit`), as `gan-disc` does with its GAN.

`TrainedDetector` is the usual case, one network on one loss (`ModelUnit`): a subclass writes
only what is its own, on one screen: the network (`_build`), the training loss (`_loss`) and the
per-image score (`_score_batch`, higher = more novel). The normal-only validation loss that
selection and early stopping read is the mean validation score, unless `_val_loss` says otherwise.

ONNX export: a family that sets `exportable` gets `scoring_module()` from `_score_batch` on its
scoring module (`BatchScore`), when that is plain arithmetic of the batch (no randomness, nothing
that depends on the batch's size).

`ReconstructionMaps`, listed first among a detector's bases, gives a detector whose network
reconstructs its images anomaly maps: the per-pixel reconstruction error (the autoencoders, the
VAE, the ED/EDÊ/EDE-GANs), with a `map_sigma` parameter.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..train.loop import LoopConfig, train_loop
from ..train.model_unit import ModelUnit
from .base import Detector, as_image_tensor
from .maps import check_sigma

SCORE_BATCH = 512
LR_SCHEDULES = ("constant", "cosine")
# The CPU budget of the trained detectors' `epochs`, fixed before any benchmark ran: about 3 s an
# epoch for the conv nets on one MNIST class on one core, so a cell trains in 1-2 minutes.
CPU_EPOCHS = 30


class BatchScore(nn.Module):
    """`score_batch(module, x)` as one module: what a torch detector's ONNX export traces."""

    def __init__(self, score_batch, module: nn.Module):
        super().__init__()
        self.net, self.score_batch = module, score_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_batch(self.net, x)


class TorchDetector(Detector):
    differentiable = True  # a network's score has a gradient w.r.t. the image
    trains_network = True  # a fit trains its networks for epochs (the GANs, kdgan and the loop's)
    history_: list[dict]
    selected_epoch_: int
    score_batch_size = SCORE_BATCH  # images a scoring pass; a family may set its own (a speed, not a result)

    def _build_modules(self, shape: tuple[int, int, int]) -> dict[str, nn.Module]:
        """Fresh modules by name, for a model of images of `shape` (what `load` fills)."""
        raise NotImplementedError

    def _modules(self) -> dict[str, nn.Module]:
        """The fitted modules by name (their state is saved as `name.key`)."""
        raise NotImplementedError

    def _set_modules(self, modules: dict[str, nn.Module]) -> None:
        raise NotImplementedError

    def _score_batch(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(N,) novelty scores of one batch, computed by the scoring module."""
        raise NotImplementedError

    def scorer(self) -> nn.Module:
        """The fitted module that scores."""
        return next(iter(self._modules().values()))

    def device(self) -> str:
        dev = self.context.torch_device
        return dev if not dev.startswith("cuda") or torch.cuda.is_available() else "cpu"

    @torch.no_grad()
    def _batched(self, fn, module: nn.Module, x: torch.Tensor, progress: bool = False,
                 desc: str = "scoring") -> torch.Tensor:
        """fn(module, batch) over `score_batch_size` batches of x, in eval mode, without autograd,
        on the module's device; the results concatenated on the CPU (an image's result never
        depends on its batch). `progress`: a bar over the batches, shown only when it takes over
        2 s (selfsup's geom72: minutes)."""
        was_training = module.training
        module.eval()
        dev = next(module.parameters()).device
        starts = tqdm(range(0, len(x), self.score_batch_size), desc=desc, unit="batch", leave=False,
                      delay=2.0, disable=not progress)
        try:
            return torch.cat([fn(module, x[i:i + self.score_batch_size].to(dev)).cpu() for i in starts])
        finally:
            module.train(was_training)

    def _scores(self, module: nn.Module, x: torch.Tensor, progress: bool = False) -> np.ndarray:
        """Per-image scores (`_score_batch`), batched as `_batched` says."""
        return self._batched(self._score_batch, module, x, progress).double().numpy()

    def _on_scorer(self, fn, x: torch.Tensor) -> torch.Tensor:
        """fn(scoring module, x on its device) in eval mode, with autograd as the caller has it;
        the result on x's device."""
        self._check_fitted()
        module = self.scorer().to(self.device())
        was_training = module.training
        module.eval()
        try:
            return fn(module, x.to(next(module.parameters()).device)).to(x.device)
        finally:
            module.train(was_training)

    def differentiable_score(self, x: torch.Tensor) -> torch.Tensor:
        return self._on_scorer(self._score_batch, x)

    def scoring_module(self) -> nn.Module:
        """`_score_batch` on the scoring module, on the CPU in eval mode (families with `exportable`)."""
        if not self.exportable:
            return super().scoring_module()
        self._check_fitted()
        return BatchScore(self._score_batch, self.scorer().cpu().eval())

    def _monitor(self):
        """The training loop's monitor when the context has one: it scores with each epoch's module."""
        if self.context.monitor is None:
            return None
        return lambda epoch, module: self.context.monitor(lambda X: self._scores(module, as_image_tensor(X)))

    def _score(self, x) -> np.ndarray:
        module = self.scorer().to(self.device())
        return self._scores(module, x, progress=self.context.progress)

    def _fit_facts(self) -> dict:
        """The fit's history and selected epoch: in a results record and in a saved model."""
        return {"history": self.history_, "selected_epoch": self.selected_epoch_}

    def fit_report(self) -> dict:
        return self._fit_facts()

    def fit_resumed(self) -> bool:
        return any(h.get("from_checkpoint") for h in self.history_)

    def _state(self):
        return {f"{name}.{k}": v for name, m in self._modules().items() for k, v in m.state_dict().items()}

    def _info(self) -> dict:
        return self._fit_facts()

    def _load_state(self, tensors, info):
        modules = self._build_modules(tuple(self.input_shape_))
        for name, module in modules.items():
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
            module.eval()
        self._set_modules(modules)
        self.history_, self.selected_epoch_ = info.get("history", []), info.get("selected_epoch", 0)


# The Gaussian that smooths a reconstruction-error map, in pixels. 1, not PatchCore's 4: these maps
# are per pixel already, nothing upsampled (PatchCore's 4 smooths a 28x28 grid shown at 224 px, half
# a grid cell), and at the papers' 32 px a sigma of 4 reaches 16 px either side, half the image. One
# pixel evens out single-pixel noise of the reconstruction and keeps a defect of a few pixels in place.
PIXEL_MAP_SIGMA = 1.0


class ReconstructionMaps(TorchDetector):
    """Maps for a detector whose scoring module reconstructs its images (a family lists it before
    its base class): `_map(x)` is, per pixel, the squared reconstruction error averaged over the
    channels, on the images' own grid (N, H, W), batched as scoring is; `anomaly_map` smooths it
    by `map_sigma` pixels (0 = none). `_reconstruct` says how the module reconstructs (its output,
    by default). The map is higher where the image is reconstructed worse, whatever the image
    score is (an L1 error, an ELBO, a latent error: the family's docstring says which)."""

    produces_maps = True

    def __init__(self, *, map_sigma: float = PIXEL_MAP_SIGMA, **base):
        self.map_sigma = check_sigma(map_sigma)
        super().__init__(**base)

    def _reconstruct(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The reconstruction x_hat (N, C, H, W) of a batch by the scoring module."""
        return module(x)

    def pixel_errors(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """(N, H, W): (x - x_hat)^2 averaged over the channels."""
        return (x - self._reconstruct(module, x)).pow(2).mean(1)

    def _map(self, x: torch.Tensor) -> torch.Tensor:
        module = self.scorer().to(self.device())
        return self._batched(self.pixel_errors, module, x, self.context.progress, desc="maps").float()


class LoopTrainedDetector(TorchDetector):
    """A network trained by the shared loop: the seeding, the device, the loop call, selection and
    the history, once. A subclass writes the network (`_build`) and the unit that trains it
    (`_unit`, a `train.loop.TrainableUnit`); `_loop_epochs`, `_run_identity` and `_after_training`
    say what else differs (a GAN's pre-training epochs, its checkpoint identity, its trace)."""

    module_name = "model"  # the fitted network's name among a saved model's tensors

    def __init__(self, epochs: int = 10, batch_size: int = 64, lr: float = 1e-3, select: str = "last",
                 patience: int = 0, min_delta: float = 0.0, **base):
        super().__init__(**base)
        self.epochs, self.batch_size, self.lr = int(epochs), int(batch_size), float(lr)
        self.select, self.patience, self.min_delta = select, int(patience), float(min_delta)
        self.loop_config()  # check the settings now
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")

    # --- what a subclass writes ----------------------------------------------------------------
    def _build(self, shape: tuple[int, int, int]) -> nn.Module:
        raise NotImplementedError

    def _unit(self, model: nn.Module, x: torch.Tensor):
        """The trainable unit that trains `model` on the training images `x` (on its device)."""
        raise NotImplementedError

    def _loop_epochs(self) -> int:
        return self.epochs

    def _run_identity(self) -> dict:
        """What identifies this fit in its checkpoints: a resume under another one is refused."""
        return {"params": self.get_params()}

    def _after_training(self, unit) -> None:
        """Keep what else the unit recorded (e.g. a per-step trace)."""

    # --- the rest, once ---------------------------------------------------------------------------
    def loop_config(self) -> LoopConfig:
        return LoopConfig(epochs=self._loop_epochs(), batch_size=self.batch_size, seed=self.random_state,
                          select=self.select, patience=self.patience, min_delta=self.min_delta)

    def _fit(self, x, x_val, y=None):
        torch.manual_seed(self.random_state)  # network initialisation
        dev = self.device()
        model = self._build(tuple(int(s) for s in x.shape[1:])).to(dev)
        x = x.to(dev)
        labels = torch.as_tensor(y, dtype=torch.long).to(dev) if self.uses_labels and y is not None else None
        unit = self._unit(model, x)
        ctx = self.context
        result = train_loop(unit, self.loop_config(), x, x_val.to(dev),
                            config={"detector": self.name, **self._run_identity(), "shape": list(x.shape[1:])},
                            checkpoint_dir=ctx.checkpoint_dir, resume=ctx.resume, progress=ctx.progress,
                            monitor=self._monitor(), name=self.name, y_train=labels)
        # the scoring module: the moving average, where there is one
        self._set_modules({self.module_name: unit.scoring_module().cpu().eval()})
        self.history_, self.selected_epoch_ = result.history, result.selected_epoch
        self._after_training(unit)

    def _build_modules(self, shape):
        return {self.module_name: self._build(shape)}

    def _modules(self):
        return {self.module_name: self.model_}

    def _set_modules(self, modules):
        self.model_ = modules[self.module_name]


class TrainedDetector(LoopTrainedDetector):
    """One network trained on one loss (`ModelUnit`): a subclass writes `_build`, `_loss` and
    `_score_batch`; Adam's `weight_decay`, a moving average (`ema_decay`) and the `lr_schedule`
    are parameters of all of them."""

    loss_names: tuple[str, ...] = ()  # the terms `_loss` returns beside the total, for the history

    def __init__(self, epochs: int = CPU_EPOCHS, weight_decay: float = 0.0, ema_decay: float = 0.0,
                 lr_schedule: str = "constant", **base):
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
        self.lr_schedule = lr_schedule
        self.ema_decay = float(ema_decay)
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {ema_decay}")
        self.weight_decay = float(weight_decay)
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        super().__init__(epochs=epochs, **base)

    # --- what a subclass writes ----------------------------------------------------------------
    def _loss(self, model: nn.Module, x: torch.Tensor, generator: torch.Generator
              ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss of a batch; a detector with `uses_labels` also gets the batch's
        labels: `_loss(model, x, generator, y)`."""
        raise NotImplementedError

    def _val_loss(self, model: nn.Module, x_val: torch.Tensor) -> float:
        """The normal-validation loss that selection and early stopping read: the mean score."""
        return float(self._scores(model, x_val).mean())

    def _on_epoch(self, model: nn.Module, x: torch.Tensor, epoch: int) -> dict:
        """Called at the start of each epoch (e.g. a phase change); fields for its record."""
        return {}

    def _fresh_optimizer_at(self) -> int | None:
        """The epoch from which training starts over with a new optimiser (none by default)."""
        return None

    def _lr_at(self, epoch: int) -> float:
        """The learning rate of an epoch: `lr` throughout ("constant"), or "cosine": half a cosine
        from `lr` at the first epoch towards 0 (never reached) over `epochs`, set per epoch."""
        if self.lr_schedule == "cosine":
            return self.lr * 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))
        return self.lr

    def _unit(self, model, x):
        unit = ModelUnit(model, lambda xb, g, *yb: self._loss(model, xb, g, *yb),
                         lambda xv: self._val_loss(unit.scoring_module(), xv), self.loss_names, lr=self.lr,
                         weight_decay=self.weight_decay, seed=self.random_state, ema_decay=self.ema_decay,
                         on_epoch=lambda epoch: self._on_epoch(model, x, epoch),
                         fresh_optimizer_at=self._fresh_optimizer_at(), lr_at=self._lr_at)
        return unit


def per_image(err: torch.Tensor) -> torch.Tensor:
    """(N, ...) elementwise errors -> (N,) means."""
    return err.flatten(1).mean(1)


def reconstruction_error(x: torch.Tensor, x_hat: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-image mean squared ('mse') or absolute ('l1') error."""
    return per_image((x - x_hat).pow(2) if kind == "mse" else (x - x_hat).abs())
