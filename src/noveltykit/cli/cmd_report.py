"""noveltykit report: the table of one or more bench folders (analysis.report.report_runs)."""
from __future__ import annotations

from .arg_types import int_list


def add_parser(sub) -> None:
    rep = sub.add_parser("report", help="print the table of one or more bench folders (one folder: "
                                        "also rebuild its table.md and report.md)",
                         description="Print one metric per class (rows) and method (columns), mean ± std over "
                                     "seeds, with MEAN rows; below it, apart, the published values for the "
                                     "dataset (P-KDGAN Table IV, not rerun here) unless --no-paper. Several "
                                     "folders of one dataset and protocol are merged into one table. Reads "
                                     "results.json only: nothing is refitted.",
                         epilog="example:\n  noveltykit report runs/x\n"
                                "  noveltykit report runs/x runs/y --seeds 0 --methods knn ede-gan --no-paper\n"
                                "  noveltykit report runs/x --metric auroc_val --times")
    rep.add_argument("run", nargs="+", help="folders written by `noveltykit bench` (same dataset and protocol)")
    rep.add_argument("--seeds", type=int_list, help="only these seeds, e.g. 0")
    rep.add_argument("--classes", type=int_list, help="only these class indices, e.g. 2,3,8")
    rep.add_argument("--methods", nargs="+", help="only these method labels, as columns in this order")
    rep.add_argument("--no-paper", action="store_true", help="leave out the published (paper) columns")
    rep.add_argument("--metric", default="auroc",
                     choices=["auroc", "aupr", "fpr95", "prec_at_n", "auroc_val", "pixel_auroc", "pro"],
                     help="auroc_val: AUROC of the epoch with the lowest normal-validation loss "
                          "(what select=val gives; needs bench --curves); pixel_auroc, pro: where the "
                          "novelty is (a dataset with masks, a detector with maps)")
    rep.add_argument("--times", action="store_true", help="also the fit, score and epoch seconds of each method")
    rep.add_argument("--companions", action="store_true",
                     help="also a column 'METHOD [ROLE]' for what a cell's fit produced beside its detector, "
                          "scored on the same test images: an ensemble's members, a distilled student's "
                          "teacher (AUROC only)")
    rep.set_defaults(func=run)


def run(args) -> int:
    from ..analysis.report import report_runs
    print(report_runs(args.run, args.metric, seeds=args.seeds, classes=args.classes, methods=args.methods,
                      with_paper=not args.no_paper, times=args.times,
                      companions=args.companions))
    return 0
