"""The tech report's linear GAN (§3.4, appendix A.5), trained with hand-derived gradients.

G(z) = B z (B: m x c), D(y) = sigmoid(A y) (A: 1 x m, no bias),
L_C = -ln D(theta_x) - ln(1 - D(theta_g)),  L_F = -ln D(theta_g),  theta_x = A x, theta_g = A B z.
Each player descends its own loss (A on L_C, B on L_F); losses and gradients are batch means.

Correct gradients (g = B z):
    dL_C/dA = (D(theta_x) - 1) x^T + D(theta_g) g^T      dL_F/dA = (D(theta_g) - 1) g^T
    dL_C/dB = D(theta_g) A^T z^T                          dL_F/dB = (D(theta_g) - 1) A^T z^T
Where A.5 differs: (1) its dL/dA keeps only the theta_x path, (D(theta_x) - 1) x, and drops the
theta_g path (D(theta_g) g from L_C). (2) Its dL/dB (of L_C + L_F) writes
(-1/D + 1/(1-D)) D(1-D) = -D + (1-D) = 1 - 2D; the correct value is -(1-D) + D = 2D - 1 (sign slip),
and it multiplies by g = dtheta_g/dA where dtheta_g/dB = A^T z^T. So the correct
d(L_C + L_F)/dB is (2D(theta_g) - 1) A^T z^T; the report's (1 - 2D(theta_g)) g is minus the
theta_g path of d(L_C + L_F)/dA. The sign does not move its zero set, D(theta_g) = 1/2.

What it can learn: x and g = B z are zero-mean and symmetric, so theta = A y is symmetric and
E[-ln sigmoid(theta)] = E[ln 2cosh(theta/2)] >= ln 2, equal iff theta = 0. With zero-mean data
E[L_C] >= 2 ln 2 with equality only at A = 0 (full-rank data): the discriminator's optimum is D = 1/2
everywhere, whatever B is, and then dL_F/dB = A^T(...) = 0 for every B. So D(theta_g) -> 1/2 is
expected, but it carries no information about the covariance; the angles below are diagnostics.
(Runs: A shrinks to batch-noise size, its direction and col(B) stay at chance angles to the PCs.
With uncentred data D instead picks up the sample mean, A ~ 2 (Sigma + B B^T)^-1 mean(x).)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch.nn.functional import softplus


@dataclass(frozen=True)
class LinearGANConfig:
    m: int = 8               # data dim
    c: int = 2               # noise dim (<= m)
    steps: int = 1000        # generator steps
    lr_d: float = 0.5        # discriminator (Curator) step size
    lr_g: float = 0.5        # generator (Forger) step size
    k: int = 1               # discriminator steps per generator step
    batch_size: int = 128
    seed: int = 0
    init_scale: float = 1.0  # ||A_0|| ~ init_scale; each coordinate of B z has std ~ init_scale

    def __post_init__(self) -> None:
        for name in ("m", "c", "steps", "k", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.c > self.m:
            raise ValueError(f"noise dim c must be <= data dim m (B z has rank <= m), got c={self.c}, m={self.m}")
        for name in ("lr_d", "lr_g", "init_scale"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")


@dataclass
class LinearGANResult:
    A: torch.Tensor                      # (1, m) final discriminator
    B: torch.Tensor                      # (m, c) final generator
    A_init: torch.Tensor
    B_init: torch.Tensor
    history: dict[str, list[float]]      # one entry per generator step
    angles: dict[str, float] = field(default_factory=dict)  # degrees, at init and at the end


def _d(A: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(y @ A.T).squeeze(1)  # D(theta) per row of y


def losses(A: torch.Tensor, B: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_C, L_F), batch means; softplus form -ln sigmoid(t) = softplus(-t) is stable."""
    tx, tg = (x @ A.T).squeeze(1), (z @ B.T @ A.T).squeeze(1)
    return softplus(-tx).mean() + softplus(tg).mean(), softplus(-tg).mean()


def grad_lc_a(A: torch.Tensor, B: torch.Tensor, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """dL_C/dA = mean (D(theta_x) - 1) x^T + mean D(theta_g) g^T, shape (1, m)."""
    g = z @ B.T
    return (((_d(A, x) - 1) @ x) / len(x) + (_d(A, g) @ g) / len(g)).unsqueeze(0)


def grad_lf_a(A: torch.Tensor, B: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """dL_F/dA = mean (D(theta_g) - 1) g^T (the Forger's loss depends on A too), shape (1, m)."""
    g = z @ B.T
    return (((_d(A, g) - 1) @ g) / len(g)).unsqueeze(0)


def grad_lc_b(A: torch.Tensor, B: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """dL_C/dB = A^T mean D(theta_g) z^T, shape (m, c)."""
    return A.T @ (_d(A, z @ B.T) @ z / len(z)).unsqueeze(0)


def grad_lf_b(A: torch.Tensor, B: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """dL_F/dB = A^T mean (D(theta_g) - 1) z^T, shape (m, c): zero whenever A = 0."""
    return A.T @ ((_d(A, z @ B.T) - 1) @ z / len(z)).unsqueeze(0)


def pca_angles(x: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> dict[str, float]:
    """Degrees: A vs the top principal direction of x; largest principal angle col(B) vs top-c PCs."""
    xc = x - x.mean(0)
    _, vecs = torch.linalg.eigh(xc.T @ xc / (len(x) - 1))  # ascending eigenvalues
    c = B.shape[1]
    top, top_c = vecs[:, -1], vecs[:, -c:]
    a = A.squeeze(0)
    cos_a = (a @ top).abs() / a.norm()
    q, _ = torch.linalg.qr(B)
    cos_b = torch.linalg.svdvals(q.T @ top_c).min()
    return {"A_vs_pc1": math.degrees(math.acos(min(1.0, cos_a.item()))),
            "colB_vs_top_c": math.degrees(math.acos(min(1.0, cos_b.item())))}


def gaussian_data(m: int, n: int, eigenvalues: tuple[float, ...], seed: int = 0) -> torch.Tensor:
    """(n, m) zero-mean (exactly, after centring) Gaussian data with these covariance eigenvalues
    (the first m; the last one repeated when fewer are given) in a random orthonormal basis."""
    if m < 1 or n < 2 or not eigenvalues or min(eigenvalues) <= 0:
        raise ValueError(f"need m >= 1, n >= 2 and positive eigenvalues, got m={m}, n={n}, {eigenvalues}")
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
    ev = torch.tensor((list(eigenvalues) + [eigenvalues[-1]] * m)[:m], dtype=torch.float64)
    x = torch.randn(n, m, generator=g, dtype=torch.float64) * ev.sqrt() @ q.T
    return x - x.mean(0)


def train_linear_gan(x: torch.Tensor, cfg: LinearGANConfig) -> LinearGANResult:
    """Alternating plain gradient descent with the hand gradients: k Curator steps on L_C,
    then one Forger step on L_F; metrics are taken on a fresh batch before each Forger step."""
    if x.ndim != 2 or x.shape[1] != cfg.m or len(x) < 2:
        raise ValueError(f"x must have shape (N >= 2, m={cfg.m}), got {tuple(x.shape)}")
    x = x.to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError("x must be finite")
    gen = torch.Generator().manual_seed(cfg.seed)
    A = cfg.init_scale * torch.randn(1, cfg.m, generator=gen, dtype=torch.float64) / math.sqrt(cfg.m)
    B = cfg.init_scale * torch.randn(cfg.m, cfg.c, generator=gen, dtype=torch.float64) / math.sqrt(cfg.c)
    A_init, B_init = A, B
    angles = {f"{k}_init": v for k, v in pca_angles(x, A, B).items()}

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(x), (cfg.batch_size,), generator=gen)
        return x[idx], torch.randn(cfg.batch_size, cfg.c, generator=gen, dtype=torch.float64)

    keys = ("L_C", "L_F", "D_x", "D_g", "residual_x", "residual_g")
    history: dict[str, list[float]] = {key: [] for key in keys}
    for _ in range(cfg.steps):
        for _ in range(cfg.k):
            A = A - cfg.lr_d * grad_lc_a(A, B, *batch())
        xb, zb = batch()
        g = zb @ B.T
        d_x, d_g = _d(A, xb), _d(A, g)
        l_c, l_f = losses(A, B, xb, zb)
        row = (l_c, l_f, d_x.mean(), d_g.mean(),
               ((d_x - 1) @ xb / len(xb)).norm(), ((1 - 2 * d_g) @ g / len(g)).norm())
        for key, v in zip(keys, row):
            history[key].append(v.item())
        B = B - cfg.lr_g * grad_lf_b(A, B, zb)
    angles.update({f"{k}_final": v for k, v in pca_angles(x, A, B).items()})
    return LinearGANResult(A=A, B=B, A_init=A_init, B_init=B_init, history=history, angles=angles)


def d_g_convergence(result: LinearGANResult, tail: float = 0.1, tol: float = 0.02) -> dict[str, float]:
    """Whether mean D(theta_g) over the last `tail` fraction of steps is within `tol` of 1/2."""
    if not 0 < tail <= 1 or tol <= 0:
        raise ValueError(f"need 0 < tail <= 1 and tol > 0, got tail={tail}, tol={tol}")
    d_g = result.history["D_g"]
    last = d_g[-max(1, int(len(d_g) * tail)):]
    mean = sum(last) / len(last)
    return {"mean_D_g_tail": mean, "abs_error": abs(mean - 0.5), "tol": tol,
            "converged": float(abs(mean - 0.5) <= tol)}
