"""`noveltykit fit`: train a detector on a folder of normal images, no test folder needed.

Every image under the folder is a normal training image (subfolders allowed; when every image is
in a direct subfolder and there are two or more, the subfolder names are class labels, which a
classifier detector such as `certainty` uses and every other detector ignores). The threshold
comes from normal validation images: `val_dir`, or the detector's seeded `validation_fraction` of
the training images. The model folder records the preprocessing that scoring repeats. Images are
read at `image_size`; by default at the size the detector reads best (a pretrained-feature
detector's extraction size, so its features never come from a 32x32 thumbnail), else 32.

A file whose extension is not an image's (a readme.txt) is skipped; an image file that cannot be
read stops the fit with its name, or with `skip_unreadable` is skipped. Every skipped file, and
their count, is recorded in the model's `training.data` (`skipped`, `n_skipped`) and its card.
"""
from __future__ import annotations

from pathlib import Path

from ..data.folder import Skipped, load_training_folder
from ..data.imagespec import ImageSpec
from ..detectors import Detector, make
from ..detectors.context import RunContext
from ..detectors.specs import MethodSpec


def fit_folder(method: str, train_dir: str | Path, out: str | Path, *, image_size: int | None = None,
               val_dir: str | Path | None = None, seed: int = 0, device: str | None = None,
               progress: bool = True, skip_unreadable: bool = False,
               threshold_quantile: float | None = None) -> Detector:
    spec = MethodSpec.parse(method)
    params = {"random_state": seed, **dict(spec.params)}
    if threshold_quantile is not None:
        if "threshold_quantile" in params:
            raise ValueError(f"--threshold-quantile {threshold_quantile} and {method} both set threshold_quantile")
        params["threshold_quantile"] = threshold_quantile
    detector = make(spec.detector, **params)  # a bad spec fails before loading
    # unless told: the detector's own size (a feature extractor's), else the papers' 32
    image_size = int(image_size or detector.preferred_image_size() or 32)
    x, paths, classes, labels, skipped = load_training_folder(train_dir, size=image_size, progress=progress,
                                                              skip_unreadable=skip_unreadable)
    x_val, val_skipped = None, []
    if val_dir is not None:
        x_val, _, _, _, val_skipped = load_training_folder(val_dir, size=image_size, progress=progress,
                                                           skip_unreadable=skip_unreadable)
        if x_val.shape[1] != x.shape[1]:  # one rule for the pair: colour if either is
            x, x_val = (ImageSpec(image_size, 3).conform_all(a) for a in (x, x_val))
    detector.configure(RunContext(device=device, progress=progress))
    detector.fit(x, x_val, y=labels)
    data = {"source": str(Path(train_dir).expanduser().resolve()), "n_files": len(paths),
            **({"classes": classes} if classes else {}),
            "n_skipped": len(skipped), "skipped": skipped_record(skipped, train_dir),
            **({"validation_source": str(Path(val_dir).expanduser().resolve()),
                "validation_skipped": skipped_record(val_skipped, val_dir)} if val_dir else {})}
    detector.save(out, preprocessing=ImageSpec(image_size, int(x.shape[1])), data=data)
    detector.training_ = {**getattr(detector, "training_", {}), "data": data}  # as `load` gives it back
    return detector


def skipped_record(skipped: list[Skipped], folder: str | Path) -> list[dict]:
    """The skipped files of a training folder as saved: path (relative to the folder) and reason."""
    root = Path(folder).expanduser()
    return [{"path": s.path.relative_to(root).as_posix(), "reason": s.reason} for s in skipped]
