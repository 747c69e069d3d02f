"""noveltykit linear-gan: the tech report's linear GAN (experiments.linear_gan_run.run_linear_gan)."""
from __future__ import annotations

import shlex
from pathlib import Path

from .arg_types import csv_list


def add_parser(sub) -> None:
    lin = sub.add_parser("linear-gan", help="the tech report's linear GAN (A.5) on Gaussian data: does D reach 1/2?",
                         description="Train G(z) = Bz against D(y) = sigmoid(Ay) with hand-derived gradients "
                                     "on zero-mean Gaussian data; write the run (linear-gan.json) and its curves "
                                     "(linear-gan.png): D on data and generated points, the fixed-point "
                                     "residuals, the angles to the principal components.",
                         epilog="example:\n  noveltykit linear-gan --out runs/linear-gan\n"
                                "  noveltykit linear-gan --k 5 --steps 4000 --out runs/linear-gan-k5   # 5 D steps per G step")
    lin.add_argument("--m", type=int, default=8, help="data dimensions")
    lin.add_argument("--c", type=int, default=2, help="noise dimensions (<= m)")
    lin.add_argument("--n", type=int, default=2000, help="data points")
    lin.add_argument("--eigenvalues", default="4,2,1,0.8,0.6,0.5", help="the data's covariance eigenvalues "
                                                                       "(the last repeats up to m)")
    lin.add_argument("--steps", type=int, default=1000, help="generator steps")
    lin.add_argument("--lr-d", type=float, default=0.5, help="the discriminator's learning rate")
    lin.add_argument("--lr-g", type=float, default=0.5, help="the generator's learning rate")
    lin.add_argument("--k", type=int, default=1, help="discriminator steps per generator step")
    lin.add_argument("--seed", type=int, default=0, help="draws the data and the initialisation")
    lin.add_argument("--out", required=True, help="folder for linear-gan.json and linear-gan.png")
    lin.set_defaults(func=run)


def run(args) -> int:
    from ..experiments.linear_gan_run import run_linear_gan
    record = run_linear_gan(args.out, m=args.m, c=args.c, n=args.n, eigenvalues=csv_list(args.eigenvalues),
                            steps=args.steps, lr_d=args.lr_d, lr_g=args.lr_g, k=args.k, seed=args.seed,
                            command=shlex.join(["noveltykit", *args.argv]))
    conv = record["convergence"]
    print(f"mean D(theta g) over the last 10% of steps: {conv['mean_D_g_tail']:.4f} "
          f"({'converged to' if conv['converged'] else 'not within'} {conv['tol']} of 1/2); "
          f"wrote {Path(args.out)}/linear-gan.json, linear-gan.png")
    return 0
