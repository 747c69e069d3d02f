"""noveltykit detectors: list detectors and their default parameters."""
from __future__ import annotations


def add_parser(sub) -> None:
    det = sub.add_parser("detectors", help="list detectors and their default parameters")
    det.set_defaults(func=run)


def run(args) -> int:
    from ..detectors.registry import default_params
    for name, params in default_params().items():
        print(f"{name}: {params}")
    return 0
