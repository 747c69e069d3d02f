"""noveltykit: one-class novelty detection on images."""

__version__ = "0.1.0"
