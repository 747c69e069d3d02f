"""noveltykit score: score image files and folders with a saved model (apply.score.score_paths)."""
from __future__ import annotations

import argparse
import sys


def add_parser(sub) -> None:
    score = sub.add_parser("score", help="score image files and folders with a saved model",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="One row per file: path, score (higher = more novel), threshold, is_novel, "
                                       "error, converted, map. Folders are read recursively. A file that cannot "
                                       "be read is a row with its error, and the rest are still scored. Without "
                                       "--out the rows go to standard output as CSV. With --maps (a model that "
                                       "gives anomaly maps: patchcore, padim, ...) each scored file's overlay "
                                       "is written to DIR at its path below the folder that holds every scored "
                                       "file, .png appended (new/a/x.jpg -> DIR/a/x.jpg.png), and its row's "
                                       "map column names it. At the end, a drift check on standard error: the "
                                       "share of images flagged against the share the threshold's quantile "
                                       "expects (one-sided binomial test, alpha 0.001, from 50 images on).",
                           epilog="example:\n  noveltykit score models/knn new/ extra.png --out scores.csv "
                                  "--report report/\n  noveltykit score models/patchcore new/ --out scores.csv "
                                  "--maps maps/")
    score.add_argument("model", help="a saved model folder (fit, or bench --save-models)")
    score.add_argument("paths", nargs="+", help="image files and folders (one that does not exist is a row with "
                                                "its error, and the exit status is then 2)")
    score.add_argument("--out", help="write the rows here: FILE.csv or FILE.jsonl")
    score.add_argument("--threshold", help="use this threshold instead of the model's: a score (e.g. 15) or a "
                                           "quantile of its normal validation scores (e.g. q0.99)")
    score.add_argument("--report", help="folder for an HTML page: score histogram, most novel and most normal images")
    score.add_argument("--memory", metavar="DIR",
                       help="a novelty memory folder (serve --memory): score with its confirmed novelties")
    score.add_argument("--maps", metavar="DIR",
                       help="write each scored image's anomaly map over it (PNG, at the model's input size, on "
                            "the model's fixed scale: its pixel threshold outlined) here; models with maps only")
    score.add_argument("--maps-npy", action="store_true",
                       help="with --maps: also each raw float32 map (H, W) as .npy beside its overlay")
    score.add_argument("--quiet", action="store_true")
    score.set_defaults(func=run)


def run(args) -> int:
    from ..apply.score import missing_paths, rows_as_csv, score_paths
    rows = score_paths(args.model, args.paths, out=args.out, threshold=args.threshold, report=args.report,
                       progress=not args.quiet, memory=args.memory, maps=args.maps, maps_npy=args.maps_npy)
    scored = [r for r in rows if r.score is not None]
    if args.out is None:  # the rows themselves, as CSV on standard output
        sys.stdout.write(rows_as_csv(rows))
    where = "".join(f"; wrote {p}" for p in (args.out, args.report and f"{args.report}/index.html") if p)
    if args.maps:
        where += f"; {sum(bool(r.map) for r in rows)} map(s) in {args.maps}"
    print(f"{len(scored)} scored, {sum(r.is_novel for r in scored)} novel, {len(rows) - len(scored)} unreadable"
          f"{where}", file=sys.stderr)
    if rows.flag_check is not None:  # more flagged than the threshold's quantile explains?
        print(rows.flag_check.line(), file=sys.stderr)
    if missing := missing_paths(args.paths):  # a typo must not pass unnoticed in a script
        from . import EXIT_USAGE
        print(f"noveltykit: error: no such file or folder: {', '.join(map(str, missing))} (the rows of the "
              "other files are written)", file=sys.stderr)
        return EXIT_USAGE
    return 0
