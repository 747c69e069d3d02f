"""noveltykit profile: parameters and MACs of a GAN detector's networks (nets.profile)."""
from __future__ import annotations


def add_parser(sub) -> None:
    prof = sub.add_parser("profile", help="parameters and multiply-accumulates of a GAN detector's networks",
                          description="Count each network's parameters and multiply-accumulates on one 32x32 "
                                      "image, and for a narrower width the teacher's (u=64) over this one's: "
                                      "the compression a P-KDGAN student buys. Nothing is trained or loaded.",
                          epilog="example:\n  noveltykit profile\n"
                                 "  noveltykit profile --method ede-gan --width 2 --channels 1   # an MNIST student")
    prof.add_argument("--method", default="ede-gan", choices=["ede-gan", "edhat-gan", "ed-gan"],
                      help="the GAN whose networks are counted")
    prof.add_argument("--width", type=int, default=64, help="u: 64 for the teacher")
    prof.add_argument("--channels", type=int, default=3, choices=[1, 3], help="image channels: 1 grey, 3 colour")
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
