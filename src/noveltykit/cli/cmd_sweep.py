"""noveltykit sweep: choose hyper-parameters on the development split (experiments.sweep.run_sweep)."""
from __future__ import annotations

import argparse

from .arg_types import class_list, csv_list
from .help_text import DATASET_HELP


def _grid(text: str) -> tuple[str, list[str]]:
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not csv_list(values):
        raise argparse.ArgumentTypeError(f"expected key=v1,v2,..., got {text!r}")
    return key.strip(), csv_list(values)


def add_parser(sub) -> None:
    swp = sub.add_parser(
        "sweep", help="choose hyper-parameters on a training-only development split (no test image is read)",
        description="Run every point of a grid (--grid: one --method, its parameters varied) or every spec "
                    "listed (--variant: other detectors, or several parameters changed at once, against "
                    "--method) on the development split of each listed class: the normal class's validation "
                    "images against other classes' TRAINING images (no test image is loaded), then choose by "
                    "a rule fixed on this command line. Writes OUT/sweep.json, sweep.md and sweep.png. "
                    "Rerunning resumes; processes on one --out share its trials (each trial is claimed by a "
                    "lock). --classes all is recorded as the list of classes it stands for, so a rerun with "
                    "that list (in that order) is the same sweep.",
        epilog="example:\n  noveltykit sweep --dataset mnist --method deep-svdd --grid lr=0.001,0.0001 "
               "--classes 2,3,8 --rule mean-dev-auroc --out runs/sweep-dsvdd\n"
               "  noveltykit sweep --dataset fashion-mnist --method knn --variant knn:k=1 --variant pca "
               "--classes all --out runs/sweep-knn")
    swp.add_argument("--dataset", required=True, metavar="NAME", help=DATASET_HELP)
    swp.add_argument("--method", required=True, help="the detector spec the grid changes, e.g. deep-svdd:epochs=30; "
                                                     "other detectors to compare it with: --variant")
    swp.add_argument("--grid", type=_grid, action="append", default=[], metavar="KEY=V1,V2",
                     help="a parameter and its values; repeat for more (their product is the grid)")
    swp.add_argument("--variant", action="append", default=[], metavar="SPEC",
                     help="instead of a grid: a whole spec to compare with --method (the incumbent: a tie "
                          "keeps it); repeat for more")
    swp.add_argument("--device", help="cpu or cuda[:N], for trained detectors; not part of the labels")
    swp.add_argument("--classes", type=class_list, required=True,
                     help="the normal classes to judge on: comma-separated indices, e.g. 2,3,8, or 'all' (every "
                          "class with training images)")
    swp.add_argument("--rule", default="mean-dev-auroc",  # checked by SweepConfig (no torch import for --help)
                     help="how the choice is made: mean-dev-auroc (highest mean over the classes), "
                          "worst-class-dev-auroc (highest minimum); ties go to the first grid point")
    swp.add_argument("--seed", type=int, default=0, help="draws the validation split and the initialisation")
    swp.add_argument("--image-size", type=int, default=32, help="load images at this side")
    swp.add_argument("--n-novel", type=int, default=2000, help="other classes' training images per dev split")
    swp.add_argument("--out", required=True, help="output folder; rerunning resumes")
    swp.add_argument("--data-dir", help="a folder holding the dataset's files (else NOVELTYKIT_DATA, else the cache)")
    swp.add_argument("--executor", default="serial", choices=["serial", "ray"],
                     help="ray: a Ray Tune experiment, one trial per grid point (pip install 'noveltykit[ray]')")
    swp.add_argument("--address", help="ray: the cluster to join (default: RAY_ADDRESS, else a local Ray)")
    swp.add_argument("--cpus-per-trial", type=int, default=1, help="ray: CPUs a trial reserves")
    swp.add_argument("--curves", action="store_true",
                     help="also record each trained trial's dev AUROC after every epoch (a diagnostic the rule "
                          "never reads; one more scoring pass of the dev split an epoch)")
    swp.add_argument("--reuse", action="append", default=[], metavar="OUT",
                     help="another sweep's --out: its finished trials of the same (spec, class, seed, data) "
                          "are copied in, not refitted (e.g. a second round's incumbent); repeat for more")
    swp.add_argument("--fit-cache", metavar="DIR",
                     help="keep every trial's fitted model in DIR by what it was fitted on; an ensemble's "
                          "member fitted there before on the same images is loaded, not refitted (share DIR "
                          "between the sweeps of one study)")
    swp.add_argument("--quiet", action="store_true", help="no progress bar")
    swp.set_defaults(func=run)


def run(args) -> int:
    from ..experiments.sweep import SweepConfig, run_sweep
    cfg = SweepConfig.from_pairs(args.grid, args.variant, dataset=args.dataset, method=args.method,
                                 device=args.device, classes=args.classes,
                                 out=args.out, seed=args.seed, rule=args.rule, image_size=args.image_size,
                                 data_dir=args.data_dir, n_novel=args.n_novel, executor=args.executor,
                                 address=args.address, cpus_per_trial=args.cpus_per_trial, curves=args.curves,
                                 reuse=args.reuse, fit_cache=args.fit_cache)
    result = run_sweep(cfg, progress=not args.quiet)
    chosen = result["points"][result["chosen"]["index"]]
    print(f"chosen by {args.rule} on the dev split: {chosen['label']} (mean dev AUROC {chosen['mean']:.4f})")
    print(f"table: {args.out}/sweep.md  plot: {args.out}/sweep.png  record: {args.out}/sweep.json")
    return 0
