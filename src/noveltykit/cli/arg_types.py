"""Argument types shared by several commands."""
from __future__ import annotations

import argparse


def csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in csv_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def class_list(text: str) -> str | list[int]:
    """'all' (resolved to the dataset's classes by the library, once it has read the data) or
    comma-separated class indices."""
    if text.strip().lower() == "all":
        return "all"
    try:
        return int_list(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'all' or comma-separated class indices, got {text!r}") from None
