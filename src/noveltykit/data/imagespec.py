"""What an image must be for a model: its side, its channels, and the fixed rules that get any
image there. Saved with every model, so that scoring a new image repeats training's preprocessing.

The rules are the loaders' (`data.folder`), the same for every model:
- resize: stretched to size x size (no crop), bilinear on 8-bit values, antialiased when shrinking;
- scaling: uint8 v -> v / 127.5 - 1, in [-1, 1];
- a grey image sent to a colour model is repeated to 3 channels; a colour image sent to a grey
  model is converted by luminance L = 0.299 R + 0.587 G + 0.114 B (ITU-R 601-2, as Pillow's "L").
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

RULES = {"resize": "stretch to size x size, bilinear (antialiased when shrinking)", "scaling": "uint8 / 127.5 - 1",
         "grey_to_colour": "repeat the channel", "colour_to_grey": "luminance 0.299 R + 0.587 G + 0.114 B"}


@dataclass(frozen=True)
class ImageSpec:
    size: int
    channels: int

    def __post_init__(self):
        if int(self.size) < 1 or self.channels not in (1, 3):
            raise ValueError(f"an image spec needs size >= 1 and 1 or 3 channels, got {self.size}, {self.channels}")

    def to_dict(self) -> dict:
        return {**asdict(self), **RULES}

    @classmethod
    def from_dict(cls, d: dict) -> "ImageSpec":
        """From a saved model's `preprocessing`; refuses rules this version does not apply."""
        other = {k: v for k, v in RULES.items() if d.get(k, v) != v}
        if other:
            raise ValueError(f"preprocessing rules {sorted(other)} differ from this noveltykit's "
                             f"({', '.join(f'{k}: {d[k]!r}' for k in other)}); a newer noveltykit saved it?")
        return cls(int(d["size"]), int(d["channels"]))

    @classmethod
    def of_shape(cls, shape) -> "ImageSpec":
        """From an input shape (C, H, W): what a model saved before specs were recorded needs."""
        return cls(int(shape[-1]), int(shape[0]))

    def conform(self, chw: np.ndarray) -> np.ndarray:
        """A uint8 (C, size, size) image with C = 1 or 3 -> this spec's channels."""
        if chw.shape[0] == self.channels:
            return chw
        if chw.shape[0] == 1:
            return np.repeat(chw, 3, axis=0)
        lum = 0.299 * chw[0].astype(np.float64) + 0.587 * chw[1] + 0.114 * chw[2]
        return np.round(lum).clip(0, 255).astype(np.uint8)[None]

    def conversion(self, chw: np.ndarray) -> str:
        """What `conform` does to this image's channels: "grey->colour", "colour->grey", or ""."""
        if chw.shape[0] == self.channels:
            return ""
        return "grey->colour" if chw.shape[0] == 1 else "colour->grey"

    def conform_all(self, images: np.ndarray) -> np.ndarray:
        """(N, C, size, size) uint8 -> this spec's channels."""
        return np.stack([self.conform(a) for a in images]) if images.shape[1] != self.channels else images
