"""noveltykit fit: train a detector on a folder of normal images (apply.fit.fit_folder)."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    fit = sub.add_parser("fit", help="train a detector on a folder of your normal images and save it",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Every image under --train is a normal training image (subfolders allowed; "
                                     "when every image sits in a direct subfolder and there are two or more, their "
                                     "names are class labels, which `certainty` uses). The threshold is the "
                                     "detector's threshold_quantile of the scores of normal validation images: "
                                     "--val, or a seeded share of --train. No test folder is needed.",
                         epilog="example:\n  noveltykit fit --method knn --train photos/normal --out models/knn\n"
                                "  noveltykit fit --method feat-knn:size=128 --train parts/ --image-size 128 "
                                "--out models/parts")
    fit.add_argument("--method", required=True, help="a detector spec, e.g. knn or conv-ae:epochs=20")
    fit.add_argument("--train", required=True, help="folder of normal images")
    fit.add_argument("--out", required=True, help="the model folder to write (new, or holding only a saved model)")
    fit.add_argument("--image-size", type=int, help="images are resized to this side (default: the size the "
                                                    "detector reads at, e.g. feat-knn's size; else 32)")
    fit.add_argument("--val", help="folder of normal validation images for the threshold (default: held out)")
    fit.add_argument("--threshold-quantile", type=float, metavar="Q",
                     help="the threshold is this quantile of the normal validation scores, e.g. 0.99 for about "
                          "1%% false alarms (default: the detector's threshold_quantile, 0.95)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--device", help="cpu (default) or cuda[:N]")
    fit.add_argument("--skip-unreadable", action="store_true",
                     help="leave out image files that cannot be read, listing them (default: stop, naming the "
                          "file); files that are not images by their extension are always left out and listed")
    fit.add_argument("--quiet", action="store_true")
    fit.set_defaults(func=run)


def run(args) -> int:
    from ..apply.fit import fit_folder
    det = fit_folder(args.method, args.train, args.out, image_size=args.image_size, val_dir=args.val,
                     seed=args.seed, device=args.device, progress=not args.quiet,
                     skip_unreadable=args.skip_unreadable, threshold_quantile=args.threshold_quantile)
    t, fa = det.training_, det.expected_false_alarms()
    for key, folder in (("skipped", args.train), ("validation_skipped", args.val)):
        if skipped := t["data"].get(key):
            print(f"skipped {len(skipped)} file(s) in {folder}: "
                  + ", ".join(f"{s['path']} ({s['reason']})" for s in skipped))
    print(f"{det.name}: trained on {t['n_train']} images, threshold {det.threshold_:.6g} "
          f"({det.threshold_quantile:g} quantile of {t['n_validation']} normal validation images; false alarms "
          f"to expect {_percent(fa['rate'])}, {fa['confidence']:.0%} interval {_percent(fa['low'])} to "
          f"{_percent(fa['high'])}); "
          f"wrote {args.out} (model card: {args.out}/README.md)\n"
          f"next: noveltykit score {args.out} NEW_IMAGES/ --out scores.csv --report report/")
    return 0


def _percent(share: float) -> str:
    return f"{100 * share:.1f}%"
