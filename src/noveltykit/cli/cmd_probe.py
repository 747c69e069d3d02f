"""noveltykit probe: an adversarial probe of a saved detector (probes.probe.run_probe)."""
from __future__ import annotations

from .help_text import DATASET_HELP


def add_parser(sub) -> None:
    probe = sub.add_parser(
        "probe", help="adversarial probe: how small a change of a test image flips a saved detector's decision",
        description="Attack test images of one class's split with a saved torch detector and write "
                    "probe.json, probe.md and probe.png (tech report 5.1). fgsm: one fast-gradient-sign step "
                    "of max-norm --eps towards the other side of the threshold (normal images pushed to look "
                    "novel, novel ones to look normal). deepfool: repeated steps to the nearest boundary of "
                    "the linearised decision until it flips, so its L2 norm estimates the smallest change "
                    "that flips it (rho_adv is their mean over the flipped images). Perturbed images are "
                    "clipped to the valid range; norms are in the images' [-1, 1] scale.",
        epilog="example:\n  noveltykit bench --dataset mnist --method ae --classes 3 --save-models --out runs/ae\n"
               "  noveltykit probe --model runs/ae/models/*/class3_seed0 --attack deepfool --dataset mnist "
               "--class 3 --out runs/probe")
    probe.add_argument("--model", required=True, help="a saved detector folder (bench --save-models)")
    probe.add_argument("--attack", required=True, choices=["fgsm", "deepfool"],
                       help="fgsm: one signed-gradient step of size --eps; deepfool: iterate to the nearest "
                            "boundary (an estimate of the smallest L2 change that flips)")
    probe.add_argument("--dataset", required=True, metavar="NAME", help=DATASET_HELP)
    probe.add_argument("--class", dest="cls", required=True, help="the cell's class (index or name)")
    probe.add_argument("--out", required=True, help="folder for probe.json, probe.md and probe.png")
    probe.add_argument("--eps", type=float, help="fgsm: max-norm of the step, [-1, 1] scale (default 16/255, "
                                                 "8 grey levels)")
    probe.add_argument("--n", type=int, default=16, help="test images to attack, half normal and half novel")
    probe.add_argument("--target", default="decision", choices=["decision", "class"],
                       help="decision: cross the novelty threshold; class: change the predicted class "
                            "(certainty only)")
    probe.add_argument("--overshoot", type=float, default=0.02, help="deepfool: step past the boundary by this")
    probe.add_argument("--max-iter", type=int, default=50, help="deepfool: give up on an image after this many steps")
    probe.add_argument("--seed", type=int, default=0, help="the split's seed and the choice of images")
    probe.add_argument("--protocol", default="one-vs-rest", choices=["one-vs-rest", "leave-one-out"])
    probe.add_argument("--data-dir", help="a folder holding the dataset's files (else NOVELTYKIT_DATA, else the cache)")
    probe.set_defaults(func=run)


def run(args) -> int:
    from ..probes.probe import run_probe
    kwargs = {} if args.eps is None else {"eps": args.eps}
    record = run_probe(args.model, args.attack, args.dataset, args.cls, args.out, n=args.n,
                       protocol=args.protocol, seed=args.seed, data_root=args.data_dir, target=args.target,
                       overshoot=args.overshoot, max_iter=args.max_iter, **kwargs)
    rho = "n/a" if record["rho_adv"] is None else f"{record['rho_adv']:.4g}"
    rel = "n/a" if record["rho_adv_normalised"] is None else f"{record['rho_adv_normalised']:.4g}"
    print(f"{args.attack} on {record['detector']}: {record['n_flipped']}/{record['n']} decisions flipped; "
          f"rho_adv {rho} (normalised {rel}); wrote {args.out}/probe.json, probe.md, probe.png")
    return 0
