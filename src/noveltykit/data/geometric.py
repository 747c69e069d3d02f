"""Sets of geometric transformations whose index a self-supervised classifier learns to tell
(tech report §2.5): which transformation was applied to a normal image.

A `Geometric` is (flip, dy, dx, k): mirror left-right, then shift by (dy, dx) with the border
filled by reflection, then rotate by k x 90° counter-clockwise: GEOM's order (Golan & El-Yaniv
2018). Shifts are a quarter of the image side (8 px at 32 x 32), as GEOM's.

A set also says what the classifier predicts: one head over its transformations (`rot4`,
`rot4-flip`, `geom72`), or, for `rot4-trans` (Hendrycks et al. 2019), three heads: the rotation
(4), the vertical shift (3) and the horizontal shift (3) of 36 transformations.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from itertools import product

import torch

from .transforms import flip, rotate90, translate

SETS = ("rot4", "rot4-flip", "geom72", "rot4-trans")


@dataclass(frozen=True)
class Geometric:
    flip: bool = False
    dy: int = 0
    dx: int = 0
    k: int = 0

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip:
            x = flip(x)
        x = translate(x, self.dy, self.dx, fill="reflect")
        return rotate90(x, self.k)

    @property
    def invertible(self) -> bool:
        return self.dy == 0 and self.dx == 0  # a shift's reflected border is not the image

    def invert(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the rotation, then the shift, then the flip; exact where `invertible`, and on the
        part of the image that stayed inside the frame otherwise."""
        x = translate(rotate90(x, -self.k), -self.dy, -self.dx, fill="reflect")
        return flip(x) if self.flip else x


@dataclass(frozen=True)
class TransformationSet:
    name: str
    transforms: tuple[Geometric, ...]
    heads: tuple[int, ...]  # classes per head
    labels: torch.Tensor  # (len(transforms), len(heads)) the true class of each head

    def __len__(self) -> int:
        return len(self.transforms)


@lru_cache(maxsize=None)
def transformation_set(name: str, size: int) -> TransformationSet:
    """The named set for square images of side `size`; built once per (name, size), since the
    detector asks for it on every batch (treat it, and its `labels`, as read-only)."""
    shift = size // 4
    shifts = (0, -shift, shift)
    if name == "rot4":
        ts = [Geometric(k=k) for k in range(4)]
    elif name == "rot4-flip":
        ts = [Geometric(flip=f, k=k) for f, k in product((False, True), range(4))]
    elif name == "geom72":
        ts = [Geometric(f, dy, dx, k) for f, dx, dy, k in product((False, True), shifts, shifts, range(4))]
    elif name == "rot4-trans":
        ts = [Geometric(False, dy, dx, k) for k, dy, dx in product(range(4), shifts, shifts)]
        labels = torch.tensor([[t.k, shifts.index(t.dy), shifts.index(t.dx)] for t in ts])
        return TransformationSet(name, tuple(ts), (4, 3, 3), labels)
    else:
        raise ValueError(f"transformation set must be one of {SETS}, got {name!r}")
    return TransformationSet(name, tuple(ts), (len(ts),), torch.arange(len(ts))[:, None])


def apply_each(tset: TransformationSet, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Image i under transformation index[i] (one call per distinct transformation)."""
    out, index = torch.empty_like(x), index.to(x.device)
    for t in index.unique().tolist():
        chosen = (index == t).nonzero().flatten()
        out[chosen] = tset.transforms[t].apply(x[chosen])
    return out
