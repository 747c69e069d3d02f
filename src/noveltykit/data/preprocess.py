"""The one resize every loader uses, so all datasets reach the models through the same pixels."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CHUNK_PIXELS = 1 << 24  # ~16M input pixels per chunk: bounds the float32 working memory to ~64 MB


def resize_uint8(images: np.ndarray, size: int = 32) -> np.ndarray:
    """Resize uint8 (N, C, H, W) to uint8 (N, C, size, size): bilinear with antialiasing, rounded.

    Images already at size x size are returned unchanged (no copy).
    """
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 (N, C, H, W), got {images.dtype} {images.shape}")
    n, c, h, w = images.shape
    if (h, w) == (size, size):
        return images
    out = np.empty((n, c, size, size), dtype=np.uint8)
    step = max(1, CHUNK_PIXELS // max(1, c * h * w))
    for i in range(0, n, step):
        x = torch.from_numpy(images[i:i + step].astype(np.float32))  # a copy: input may be read-only
        # antialias only acts when shrinking; for 28 -> 32 this is plain bilinear, as in the paper
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        out[i:i + step] = y.round_().clamp_(0, 255).to(torch.uint8).numpy()
    return out
