"""noveltykit profile: parameters and MACs of a GAN detector's networks (nets.profile)."""
from __future__ import annotations


def add_parser(sub) -> None:
    prof = sub.add_parser("profile", help="parameters and multiply-accumulates of a GAN detector's networks")
    prof.add_argument("--method", default="ede-gan", choices=["ede-gan", "edhat-gan", "ed-gan"])
    prof.add_argument("--width", type=int, default=64, help="u: 64 for the teacher")
    prof.add_argument("--channels", type=int, default=3, choices=[1, 3])
    prof.set_defaults(func=run)


def run(args) -> int:
    from ..nets.profile import profile_against_teacher
    rows = profile_against_teacher(args.method, args.width, args.channels)
    print(f"{args.method} u={args.width} channels={args.channels} (32x32 input; MACs = FLOPs / 2)")
    for name, params, macs, params_ratio, macs_ratio in rows:
        ratio = "" if params_ratio is None else \
            f"  (teacher u=64 / this: {params_ratio:.2f}x params, {macs_ratio:.2f}x MACs)"
        print(f"  {name:<14} {params / 1e6:8.4f}M params  {macs / 1e6:9.3f}M MACs{ratio}")
    return 0
