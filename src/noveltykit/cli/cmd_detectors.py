"""noveltykit detectors [NAME] [--verbose]: one line a detector, or one detector in full."""
from __future__ import annotations


def add_parser(sub) -> None:
    det = sub.add_parser("detectors", help="list detectors: what each is, what it needs, its measured cost",
                         description="One line a detector: what it is, whether a fit trains a network, "
                                     "whether it needs labels or an optional extra, and its fit and score "
                                     "cost relative to knn, measured. Which one to start with: the README's "
                                     "decision guide.",
                         epilog="example:\n  noveltykit detectors\n  noveltykit detectors knn    # its parameters "
                                "and their defaults\n"
                                "  noveltykit bench --dataset mnist --method knn:k=10 --classes 3 --out runs/k10")
    det.add_argument("name", nargs="?", help="one detector: its summary, cost and full default parameters")
    det.add_argument("--verbose", "-v", action="store_true", help="each detector's full default parameters too")
    det.set_defaults(func=run)


def run(args) -> int:
    from ..detectors.catalog import catalog, cost_note, describe
    if args.name:
        print("\n".join(describe(args.name)))
        return 0
    print("\n".join(catalog(verbose=args.verbose)))
    print()
    print("\n".join(cost_note()))
    return 0
