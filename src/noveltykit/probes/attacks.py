"""Adversarial probes (tech report §5.1): how far must an image move before a detector changes
its mind?

An adversarial example is the smallest r with f(x) != f(x + r), Delta_adv(x; f) = min ||r||_2;
the robustness of f is rho_adv(f) = E[Delta_adv(x; f)], also reported relative to ||x||_2 as
Moosavi-Dezfooli et al. (2016) do. Two ways to find r:

- `fgsm`: one step of size eps along the sign of the gradient (Goodfellow et al. 2015): cheap,
  an upper bound on nothing, a probe of how the decision reacts to a small max-norm change.
- `deepfool`: repeated linearisation of f, each step to the nearest boundary of the linearised
  f, so its ||r||_2 approximates Delta_adv (Moosavi-Dezfooli et al. 2016).

The attacks take a plain callable: a binary f(x) -> (N,) (one class where f > 0, here "novel"),
or a multi-class f(x) -> (N, K) of class scores (logits or log-probabilities; the class is the
argmax). `detector_decision` builds f from a fitted detector's contract: its differentiable
novelty score minus its threshold, or (target="class") its classifier's log-probabilities. Images are
scored one by one (a detector's score of an image never depends on its batch), so one backward
pass of the batch's sum gives every image's own gradient.

Norms are in the images' own scale, [-1, 1]. No attack clips to that range unless asked:
`clip_to_range` after any attack, or `deepfool(bounds=...)`, which keeps every iterate in range.
Nothing here is random.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from ..detectors import NotFittedError

Decision = Callable[[torch.Tensor], torch.Tensor]  # (N, C, H, W) -> (N,) binary or (N, K) classes
TARGETS = ("decision", "class")
BATCH = 256  # images attacked at once: memory, never results, depends on it


@dataclass
class AttackResult:
    """What an attack did to each image of a batch."""

    perturbation: torch.Tensor  # (N, C, H, W): the perturbed image is x + perturbation
    flipped: torch.Tensor  # bool (N,): the decision at x + perturbation differs from the one at x
    iterations: torch.Tensor  # int64 (N,): gradient steps taken (fgsm: 1)
    label_before: torch.Tensor  # int64 (N,): binary 1 = novel (f > 0), 0 = normal; else the class
    label_after: torch.Tensor


# --- a detector as a differentiable function ---------------------------------------------------

def detector_decision(det, target: str = "decision") -> Decision:
    """A fitted detector's decision as a differentiable f of the images, through its contract.

    target="decision": f(x) = score(x) - threshold_, novel where f > 0 (the detector's `predict`),
    from `differentiable_score` (detectors whose contract says `differentiable`).
    target="class" (detectors that `classify`): the log-probabilities of its classifier of the
    normal classes, from `class_log_probabilities`, to change the predicted class.
    Each detector scores in eval mode on its own device; f returns on the images' device, so
    gradients reach the caller's tensor.
    """
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    name = getattr(det, "name", "") or type(det).__name__
    if not getattr(det, "differentiable", False):
        raise ValueError(f"{name}: adversarial probes need a differentiable detector (a torch detector whose "
                         f"score has a gradient w.r.t. the image); {name} is not one")
    if not hasattr(det, "threshold_"):
        raise NotFittedError(f"{type(det).__name__} is not fitted; call fit(X) first")
    if target == "class":
        if not det.classifies:
            raise ValueError(f"target='class' attacks a classifier's predicted class: {name} has no classifier "
                             "of the normal classes; use target='decision'")
        return det.class_log_probabilities
    return lambda x: det.differentiable_score(x).double() - det.threshold_


# --- shared pieces ----------------------------------------------------------------------------

def _labels(out: torch.Tensor) -> torch.Tensor:
    """The decision: 1 novel / 0 normal for a binary f, the argmax class for a multi-class one."""
    return out.argmax(1) if out.ndim == 2 else (out > 0).long()


@torch.no_grad()
def _decide(f: Decision, x: torch.Tensor) -> torch.Tensor:
    return _labels(f(x))


def _check_output(out: torch.Tensor, n: int) -> None:
    if out.ndim not in (1, 2) or out.shape[0] != n:
        raise ValueError(f"the attacked function must return (N,) or (N, K) for N={n} images, "
                         f"got shape {tuple(out.shape)}")
    if not out.requires_grad:
        raise ValueError("the attacked function has no gradient w.r.t. the images (computed without "
                         "autograd, or not differentiable); adversarial probes need one")


def _grad(f: Decision, x: torch.Tensor, objective=lambda out: out) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x) detached, d objective_i / d x_i per image). `objective` maps f's output to (N,)."""
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = f(xg)
        _check_output(out, len(x))
        (grad,) = torch.autograd.grad(objective(out).sum(), xg)
    return out.detach(), grad


def _jacobian(f: Decision, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f(x) (N, K) detached, d f_k(x_i) / d x_i as (N, K, D)): one backward pass per class."""
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        out = f(xg)
        _check_output(out, len(x))
        k = out.shape[1]
        rows = [torch.autograd.grad(out[:, j].sum(), xg, retain_graph=j < k - 1)[0].flatten(1) for j in range(k)]
    return out.detach(), torch.stack(rows, 1)


def _batched(attack: Callable[[torch.Tensor], AttackResult], x: torch.Tensor, batch_size: int) -> AttackResult:
    parts = [attack(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
    return AttackResult(*(torch.cat([getattr(p, fl.name) for p in parts]) for fl in fields(AttackResult)))


def _as_images(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if not x.is_floating_point() or x.ndim < 2 or len(x) == 0:
        raise ValueError(f"attack a non-empty float batch (N, ...), got {x.dtype} shape {tuple(x.shape)}")
    return x.detach()


# --- FGSM --------------------------------------------------------------------------------------

def fgsm(f: Decision, x: torch.Tensor, eps: float, batch_size: int = BATCH) -> AttackResult:
    """One fast-gradient-sign step r = eps * sign(gradient), towards the other side.

    Binary f: a normal image (f <= 0) is pushed up to look novel, a novel one down to look normal.
    Multi-class f: the step raises the cross-entropy of the predicted class. Every pixel whose
    gradient is non-zero moves by exactly +-eps (no clipping here: see `clip_to_range`).
    """
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    return _batched(lambda xb: _fgsm(f, xb, float(eps)), _as_images(x), batch_size)


def _fgsm(f: Decision, x: torch.Tensor, eps: float) -> AttackResult:
    with torch.no_grad():
        out = f(x)
    before = _labels(out)
    if out.ndim == 2:
        _, grad = _grad(f, x, lambda out: F.cross_entropy(out, before, reduction="none"))
        direction = torch.ones(len(x), dtype=x.dtype)
    else:
        _, grad = _grad(f, x)
        direction = 1.0 - 2.0 * before.to(x.dtype)  # +1: normal, push up; -1: novel, push down
    r = eps * grad.sign() * direction.view(-1, *[1] * (x.ndim - 1))
    after = _decide(f, x + r)
    return AttackResult(r, after != before, torch.ones(len(x), dtype=torch.long), before, after)


# --- DeepFool ----------------------------------------------------------------------------------

def deepfool(f: Decision, x: torch.Tensor, overshoot: float = 0.02, max_iter: int = 50,
             bounds: tuple[float, float] | None = None, batch_size: int = BATCH) -> AttackResult:
    """DeepFool: step to the nearest boundary of the linearised f until the decision changes.

    Binary f: r_i = -f(x_i) grad f(x_i) / ||grad f(x_i)||^2. Multi-class f (original class k0):
    the step to the nearest linearised boundary f_k = f_k0, k != k0. The iterate is
    x_i = x + (1 + overshoot) * sum of the r_i (the overshoot carries it across the boundary it
    reaches), kept in `bounds` when given. Images whose decision never changes within `max_iter`
    steps, or where a step is zero (no gradient, or exactly on the boundary f = 0 of a binary f),
    are returned with flipped=False and their last perturbation.
    """
    if overshoot < 0 or int(max_iter) < 1:
        raise ValueError(f"need overshoot >= 0 and max_iter >= 1, got {overshoot}, {max_iter}")
    if bounds is not None and not bounds[0] < bounds[1]:
        raise ValueError(f"bounds must be (low, high) with low < high, got {bounds}")
    return _batched(lambda xb: _deepfool(f, xb, float(overshoot), int(max_iter), bounds), _as_images(x),
                    batch_size)


def _binary_step(f: Decision, x: torch.Tensor, _label0: torch.Tensor) -> torch.Tensor:
    out, grad = _grad(f, x)
    g = grad.flatten(1).double()
    norm2 = g.pow(2).sum(1)
    scale = torch.where(norm2 > 0, -out.double() / norm2.clamp_min(1e-300), torch.zeros_like(norm2))
    return (scale[:, None] * g).to(x.dtype).view_as(x)


def _multiclass_step(f: Decision, x: torch.Tensor, label0: torch.Tensor) -> torch.Tensor:
    out, jac = _jacobian(f, x)
    rows = torch.arange(len(x))
    fk = (out - out[rows, label0][:, None]).double()  # <= 0 while k0 is still the argmax
    wk = (jac - jac[rows, label0][:, None]).double()
    wnorm = wk.norm(dim=2)
    dist = torch.where(wnorm > 0, fk.abs() / wnorm.clamp_min(1e-300), torch.full_like(fk, float("inf")))
    dist[rows, label0] = float("inf")
    nearest = dist.argmin(1)
    w = wk[rows, nearest]
    scale = fk[rows, nearest].abs() / wnorm[rows, nearest].pow(2).clamp_min(1e-300)
    scale = torch.where(torch.isfinite(dist[rows, nearest]), scale, torch.zeros_like(scale))
    return (scale[:, None] * w).to(x.dtype).view_as(x)


def _deepfool(f: Decision, x: torch.Tensor, overshoot: float, max_iter: int, bounds) -> AttackResult:
    with torch.no_grad():
        out0 = f(x)
    label0 = _labels(out0)
    step = _multiclass_step if out0.ndim == 2 else _binary_step
    r_total, x_adv, label = torch.zeros_like(x), x.clone(), label0.clone()
    iterations = torch.zeros(len(x), dtype=torch.long)
    active = torch.ones(len(x), dtype=torch.bool)
    for _ in range(max_iter):
        idx = active.nonzero().flatten()
        if len(idx) == 0:
            break
        r = step(f, x_adv[idx], label0[idx])
        r_total[idx] += r
        iterations[idx] += 1
        x_new = x[idx] + (1 + overshoot) * r_total[idx]
        x_adv[idx] = x_new if bounds is None else x_new.clamp(*bounds)
        label[idx] = _decide(f, x_adv[idx])
        stuck = r.flatten(1).abs().amax(1) == 0  # no gradient, or on the boundary: no step helps
        active[idx[(label[idx] != label0[idx]) | stuck]] = False
    return AttackResult(x_adv - x, label != label0, iterations, label0, label)


# --- range and robustness ------------------------------------------------------------------------

def clip_to_range(f: Decision, x: torch.Tensor, result: AttackResult, low: float = -1.0,
                  high: float = 1.0) -> AttackResult:
    """The attack's images clipped to [low, high] (valid images again), decisions re-taken there.

    A separate step so that each attack's own perturbation stays what its definition says; a
    clipped pixel moves less than eps, and an image may no longer flip.
    """
    x = _as_images(x)
    r = (x + result.perturbation).clamp(low, high) - x
    after = torch.cat([_decide(f, (x + r)[i:i + BATCH]) for i in range(0, len(x), BATCH)])
    return AttackResult(r, after != result.label_before, result.iterations, result.label_before, after)


def perturbation_norms(perturbation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(||r||_2, ||r||_inf) of each image's perturbation."""
    flat = perturbation.detach().flatten(1).double()
    return flat.norm(dim=1), flat.abs().amax(1)


def robustness(perturbation: torch.Tensor, x: torch.Tensor, flipped: torch.Tensor) -> dict:
    """rho_adv: the mean ||r||_2 over the images whose decision flipped, and the mean of
    ||r||_2 / ||x||_2 over them (images with ||x||_2 = 0 left out of that one); None where no
    image flipped. Images that never flipped are counted in n, not in the means."""
    l2, _ = perturbation_norms(perturbation)
    x_norm = torch.as_tensor(x).detach().flatten(1).double().norm(dim=1)
    flipped = torch.as_tensor(flipped, dtype=torch.bool)
    ratio_ok = flipped & (x_norm > 0)
    return {"rho_adv": float(l2[flipped].mean()) if flipped.any() else None,
            "rho_adv_normalised": float((l2[ratio_ok] / x_norm[ratio_ok]).mean()) if ratio_ok.any() else None,
            "n": len(l2), "n_flipped": int(flipped.sum())}
