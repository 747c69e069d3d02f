"""noveltykit data fetch|info: download a dataset into the cache, or show what is cached."""
from __future__ import annotations

import json


def add_parser(sub) -> None:
    data = sub.add_parser("data", help="fetch datasets into the cache, or show what is cached")
    data.add_argument("action", choices=["fetch", "info"])
    data.add_argument("--dataset", required=True,
                      help="mnist | fashion-mnist | cifar10 | cifar10-jpeg | folder:PATH")
    data.add_argument("--data-dir", help="a folder holding the dataset's files (else NOVELTYKIT_DATA)")
    data.set_defaults(func=run)


def run(args) -> int:
    from ..data import dataset_info, fetch_dataset
    fn = fetch_dataset if args.action == "fetch" else dataset_info
    print(json.dumps(fn(args.dataset, args.data_dir), indent=2, default=str))
    return 0
