"""`score --maps DIR`, the score page's and `serve`'s overlays: a saved model's anomaly maps drawn over
the images as the model read them (its size and channels, `score_rows.read_converted`), on the
model's fixed scale (`analysis.heatmaps.overlay`: its `pixel_threshold_` at the middle, outlined).

Where the files go (`map_names`): below DIR, each scored file at its path relative to the deepest
folder that holds every scored file, with `.png` (the overlay) or `.npy` (the raw float32 map)
appended to its whole name: scoring `new/a/x.png`, `new/b/x.png` and `new/b/x.jpg` writes
`DIR/a/x.png.png`, `DIR/b/x.png.png` and `DIR/b/x.jpg.png`. Two files never share a name; the same
file given twice is drawn once more over itself.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..analysis.heatmaps import overlay, png_bytes
from ..detectors import Detector
from ..detectors.maps import MAP_DETECTORS
from ..fileio import atomic_write_bytes


def gives_maps(detector: Detector) -> bool:
    """Whether the model's overlays can be drawn: a map detector with its pixel threshold."""
    return bool(detector.produces_maps) and getattr(detector, "pixel_threshold_", None) is not None


def check_maps(detector: Detector, model: str | Path | None = None) -> None:
    """A ValueError (the CLI's usage status) unless the model gives anomaly maps on a fixed scale."""
    name = str(model) if model is not None else detector.name
    if not detector.produces_maps:
        raise ValueError(f"{name} gives no anomaly maps ({detector.name} scores whole images); detectors "
                         f"that do: {', '.join(MAP_DETECTORS)}")
    if getattr(detector, "pixel_threshold_", None) is None:
        raise ValueError(f"{name}: saved without a pixel threshold, so its maps have no scale to be drawn on; "
                         "fit it again")


def map_scale(detector: Detector) -> tuple[float, float]:
    """(pixel threshold, floor): the fixed scale of the model's overlays."""
    floor = getattr(detector, "map_floor_", None)
    return float(detector.pixel_threshold_), 0.0 if floor is None else float(floor)


def map_names(files: list[Path]) -> list[Path]:
    """Each file's name below a maps folder, without the added suffix: its path relative to the
    deepest folder holding every file (paths made absolute lexically, so `..` never escapes)."""
    if not files:
        return []
    parents = [os.path.dirname(os.path.abspath(p)) for p in files]
    root = os.path.commonpath(parents)
    return [Path(os.path.relpath(os.path.abspath(p), root)) for p in files]


def overlays(detector: Detector, chw: np.ndarray, maps: np.ndarray | None = None
             ) -> tuple[list[np.ndarray], np.ndarray]:
    """uint8 (N, C, H, W) images as the model reads them -> their overlays (uint8 (H, W, 3) each)
    and maps (float32 (N, H, W); computed here unless given)."""
    if maps is None:
        maps = detector.anomaly_map(chw)
    threshold, floor = map_scale(detector)
    return [overlay(img.transpose(1, 2, 0), m, threshold, floor) for img, m in zip(chw, maps)], maps


def overlay_png(detector: Detector, chw: np.ndarray) -> list[bytes]:
    """The PNG bytes of each image's overlay."""
    return [png_bytes(o) for o in overlays(detector, chw)[0]]


def npy_bytes(amap: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(amap, np.float32), allow_pickle=False)
    return buf.getvalue()


class MapWriter:
    """Writes the overlays (and with `npy` the raw maps) of scored images below `directory`, each
    atomically; `write` returns the overlay's path."""

    def __init__(self, detector: Detector, directory: str | Path, files: list[Path], npy: bool = False):
        check_maps(detector)
        self.detector, self.directory, self.npy = detector, Path(directory), npy
        self.names = map_names(files)

    def write(self, indices: list[int], chw: np.ndarray) -> list[Path]:
        """Images `indices` (positions in `files`) as the model read them, uint8 (N, C, H, W)."""
        images, maps = overlays(self.detector, chw)
        paths = []
        for i, image, amap in zip(indices, images, maps):
            base = self.directory / self.names[i]
            path = base.with_name(base.name + ".png")
            atomic_write_bytes(path, png_bytes(image))
            if self.npy:
                atomic_write_bytes(base.with_name(base.name + ".npy"), npy_bytes(amap))
            paths.append(path)
        return paths
