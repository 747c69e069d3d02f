"""noveltykit data fetch|info: download a dataset into the cache, or show what is cached."""
from __future__ import annotations

import json

from .help_text import DATASET_HELP


def add_parser(sub) -> None:
    data = sub.add_parser(
        "data", help="fetch datasets into the cache, or show what is cached",
        description="fetch: download a dataset (or copy it from --data-dir), verify its checksums and keep it "
                    "in the cache, so that bench, sweep, distill and probe find it. info: what is cached and "
                    "where, as JSON; nothing is downloaded.",
        epilog="example:\n  noveltykit data fetch --dataset fashion-mnist\n"
               "  noveltykit data info --dataset mnist")
    data.add_argument("action", choices=["fetch", "info"], help="fetch into the cache, or show what is there")
    data.add_argument("--dataset", required=True, metavar="NAME", help=DATASET_HELP)
    data.add_argument("--data-dir", help="a folder holding the dataset's files (else NOVELTYKIT_DATA)")
    data.set_defaults(func=run)


def run(args) -> int:
    from ..data import dataset_info, fetch_dataset
    fn = fetch_dataset if args.action == "fetch" else dataset_info
    print(json.dumps(fn(args.dataset, args.data_dir), indent=2, default=str))
    return 0
