"""The user's own images as a one-class dataset (`folder:PATH`).

Layout: PATH/train/** are normal training images (subfolders allowed), PATH/test/normal/** and
PATH/test/novel/** the test images (labels 0 and 1). When every training image sits in a direct
subfolder of train/ and there are two or more, those subfolders are the normal classes
(`train_groups`, named in `info["train_classes"]`), for detectors that learn them (`certainty`). Files and folders whose names start with a
dot are ignored; any other file must be a readable image or loading stops with its name.

A folder of training images alone (`load_training_folder`, what `fit` reads) is more tolerant: a
file whose extension is not an image's (`IMAGE_EXTENSIONS`: a readme.txt, a .csv beside the
images) is skipped and listed, and an image file that cannot be read stops loading with its name,
or, with `skip_unreadable`, is skipped and listed too.

Conversions (decided here, once, for every image):
- grey (L, 1-bit) -> 1 channel; colour -> 3 channels. If any image is colour the whole dataset is
  RGB and grey images are repeated to 3 channels.
- 16-bit grey (I;16*, and I with values in 0..65535) -> 8 bits by the full 16-bit range
  (v * 255 / 65535): never clipped, and the same value maps to the same grey in every image
  (no per-image stretching, which would hide brightness differences a detector may need).
  I with values outside 0..65535, and 32-bit float (F), are stretched from their own min..max.
- alpha (RGBA, LA, transparent palettes) is composited on white, as a viewer shows it.
- CMYK, YCbCr, LAB, HSV -> RGB; palette (P) -> L when every used colour is grey, else RGB.
- EXIF orientation is applied; then every image is resized (stretched) to size x size.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from .images import ImageDataset
from .preprocess import resize_uint8

# The extensions of training images (lower case): the raster formats Pillow reads itself
IMAGE_EXTENSIONS = frozenset((".png", ".apng", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".gif", ".tif",
                              ".tiff", ".webp", ".avif", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".jp2",
                              ".j2k", ".psd", ".pcx", ".qoi"))
NOT_AN_IMAGE = "not an image file by its extension"
DEFAULT_MAX_PIXELS = 40_000_000  # refuse larger images: decoding them costs GBs and is almost surely a mistake
LAYOUT = """expected layout:
  PATH/train/...        normal training images (subfolders allowed)
  PATH/test/normal/...  normal test images
  PATH/test/novel/...   novel test images"""


def _on_white(pixels: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float32)[..., None] / 255.0
    return np.round(pixels.astype(np.float32) * a + 255.0 * (1.0 - a)).astype(np.uint8)


def _scale_to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    return np.round((values.astype(np.float64) - lo) * (255.0 / (hi - lo))).clip(0, 255).astype(np.uint8)


def image_to_array(im: Image.Image) -> np.ndarray:
    """A Pillow image in any mode -> uint8 (H, W) grey or (H, W, 3) RGB, by the rules above."""
    mode = im.mode
    if mode in ("L", "RGB"):
        return np.asarray(im)
    if mode == "1":
        return np.asarray(im.convert("L"))
    if mode.startswith("I;16"):
        return _scale_to_uint8(np.asarray(im), 0, 65535)
    if mode in ("I", "F"):
        values = np.asarray(im)
        lo, hi = float(values.min()), float(values.max())
        if mode == "I" and lo >= 0 and hi <= 65535:  # how Pillow may hold a 16-bit file
            return _scale_to_uint8(values, 0, 65535)
        return _scale_to_uint8(values, lo, hi)
    if mode == "P" and "transparency" not in im.info:
        rgb = np.asarray(im.convert("RGB"))
        grey = (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
        return rgb[..., 0].copy() if grey else rgb
    if mode in ("LA", "La"):
        la = np.asarray(im.convert("LA"))
        return _on_white(la[..., :1], la[..., 1])[..., 0]
    if mode in ("RGBA", "RGBa", "PA", "P"):  # P here has a transparent colour
        rgba = np.asarray(im.convert("RGBA"))
        return _on_white(rgba[..., :3], rgba[..., 3])
    return np.asarray(im.convert("RGB"))  # CMYK, YCbCr, LAB, HSV, RGBX, ...


def _decode(source, name, size: int, max_pixels: int) -> np.ndarray:
    """`source` (a path or a binary file object) -> uint8 (C, size, size); errors start with `name`."""
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit; ours (checked before decoding) is the one that decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise ValueError(f"{name}: {width}x{height} = {width * height:,} pixels is over the limit of "
                                     f"{max_pixels:,} (max_pixels)")
                im = ImageOps.exif_transpose(im)  # decodes the image: truncation shows up here
                pixels = image_to_array(im)
    except Image.DecompressionBombError as e:
        raise ValueError(f"{name}: image too large, over the pixel limit ({e})") from e
    except UnidentifiedImageError as e:
        raise ValueError(f"{name}: not an image file Pillow can read") from e
    except (OSError, SyntaxError, EOFError) as e:
        raise ValueError(f"{name}: unreadable or truncated image ({e})") from e
    chw = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    return resize_uint8(np.ascontiguousarray(chw)[None], size)[0]


def load_image(path: str | Path, size: int = 32, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """One image file -> uint8 (C, size, size) with C = 1 or 3; ValueError naming the file if unusable."""
    return _decode(path, path, size, max_pixels)


def load_image_bytes(data: bytes, size: int = 32, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "image"
                     ) -> np.ndarray:
    """An image file's contents (an upload) -> as `load_image`, by the same rules and limit; the
    ValueError names `name` (the uploaded file's name)."""
    return _decode(io.BytesIO(data), name, size, max_pixels)


def list_images(folder: Path) -> list[Path]:
    """Every file under `folder`, recursively, sorted, skipping dot-files and dot-folders."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def load_images(paths: list[Path], size: int, max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool = False,
                desc: str = "loading") -> list[np.ndarray]:
    """Each file -> uint8 (C, size, size), with a progress bar; the first unusable file stops it."""
    return [load_image(p, size, max_pixels) for p in tqdm(paths, desc=desc, unit="img", disable=not progress)]


def channels_of(images: list[np.ndarray]) -> int:
    """3 if any image is colour (the whole set is then RGB), else 1."""
    return 3 if any(a.shape[0] == 3 for a in images) else 1


def stack_images(images: list[np.ndarray], channels: int) -> np.ndarray:
    """(N, channels, S, S): grey images repeated to 3 channels where the set is colour."""
    return np.stack([np.repeat(a, channels // a.shape[0], axis=0) for a in images])


def is_image_name(path: Path) -> bool:
    """Whether the file's extension is an image's (IMAGE_EXTENSIONS, any case)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


class Skipped(NamedTuple):
    """A file of a training folder left out, and why (the reason without the file's name)."""
    path: Path
    reason: str


class TrainingFolder(NamedTuple):
    """A folder of normal training images, loaded: uint8 (N, C, S, S) images, their paths, class
    names and labels (or None), and the files skipped, in file order."""
    x: np.ndarray
    paths: list[Path]
    classes: list[str]
    labels: np.ndarray | None
    skipped: list[Skipped]


def load_training_folder(folder: str | Path, *, size: int = 32, max_pixels: int = DEFAULT_MAX_PIXELS,
                         progress: bool = False, skip_unreadable: bool = False) -> TrainingFolder:
    """Every image under `folder` (subfolders allowed) as normal training images. The classes are
    the direct subfolders, when every image is in one and there are two or more (as `train/` of a
    folder dataset). A file whose extension is not an image's is skipped; an image file that cannot
    be read stops loading with its name, or is skipped with `skip_unreadable`. Every skipped file
    is in `skipped`."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        what = "is a file, expected" if folder.is_file() else "no such"
        raise ValueError(f"{folder}: {what} folder of training images")
    files = list_images(folder)
    skipped = [Skipped(p, NOT_AN_IMAGE) for p in files if not is_image_name(p)]
    paths, images = [], []
    for p in tqdm([p for p in files if is_image_name(p)], desc=f"loading {folder.name}", unit="img",
                  disable=not progress):
        try:
            images.append(load_image(p, size, max_pixels))
        except ValueError as exc:
            if not skip_unreadable:
                raise ValueError(f"{exc} (to leave unreadable images out: fit --skip-unreadable, or "
                                 "skip_unreadable=True)") from exc
            skipped.append(Skipped(p, str(exc).removeprefix(f"{p}: ")))
        else:
            paths.append(p)
    skipped.sort(key=lambda s: s.path)
    if not paths:
        others = f"; {len(skipped)} file(s) skipped: {describe_skipped(skipped, folder, 10)}" if skipped else ""
        raise ValueError(f"{folder}: no images in it (files and folders starting with a dot are ignored; "
                         f"image extensions: {' '.join(sorted(IMAGE_EXTENSIONS))}){others}")
    classes, groups = train_classes(folder, paths)
    return TrainingFolder(stack_images(images, channels_of(images)), paths, classes, groups, skipped)


def describe_skipped(skipped: list[Skipped], folder: Path, limit: int | None = None) -> str:
    """'a.txt (why), b.png (why)', each relative to `folder`; past `limit` files, '... and N more'."""
    shown = skipped if limit is None else skipped[:limit]
    text = ", ".join(f"{s.path.relative_to(folder).as_posix()} ({s.reason})" for s in shown)
    return text + (f", ... and {len(skipped) - len(shown)} more" if len(shown) < len(skipped) else "")


def load_folder(path: str | Path, *, size: int = 32, max_pixels: int = DEFAULT_MAX_PIXELS,
                progress: bool = False) -> ImageDataset:
    """Load PATH/train, PATH/test/normal, PATH/test/novel as an ImageDataset (see module doc)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"folder dataset {root} does not exist or is not a folder.\n{LAYOUT}")
    parts = {"train": root / "train", "normal": root / "test" / "normal", "novel": root / "test" / "novel"}
    files = {}
    for key, folder in parts.items():
        if not folder.is_dir():
            raise ValueError(f"folder dataset: {folder} is missing.\n{LAYOUT}")
        files[key] = list_images(folder)
        if not files[key]:
            raise ValueError(f"folder dataset: {folder} is empty (no images).\n{LAYOUT}")

    loaded = load_images([p for paths in files.values() for p in paths], size, max_pixels, progress,
                         f"loading {root.name}")
    arrays, start = {}, 0
    for key, paths in files.items():
        arrays[key], start = loaded[start:start + len(paths)], start + len(paths)
    channels = channels_of(loaded)

    def stack(group: list[np.ndarray]) -> np.ndarray:
        return stack_images(group, channels)

    test_x = np.concatenate([stack(arrays["normal"]), stack(arrays["novel"])])
    test_y = np.array([0] * len(files["normal"]) + [1] * len(files["novel"]), dtype=np.int64)
    rel = lambda ps: [str(p.relative_to(root)) for p in ps]  # noqa: E731
    classes, groups = train_classes(parts["train"], files["train"])
    return ImageDataset(
        name=f"folder:{root.resolve().name}",
        train_x=stack(arrays["train"]),
        train_y=np.zeros(len(files["train"]), dtype=np.int64),
        test_x=test_x,
        test_y=test_y,
        class_names=["normal", "novel"],
        source=str(root.resolve()),
        info={"root": str(root.resolve()), "train_files": rel(files["train"]),
              "test_files": rel(files["normal"]) + rel(files["novel"]), "size": size,
              **({"train_classes": classes} if classes else {})},
        train_groups=groups,
    )


def train_classes(train: Path, paths: list[Path]) -> tuple[list[str], np.ndarray | None]:
    """The direct subfolders of train/ as classes, when every image is in one and there are >= 2."""
    tops = [p.relative_to(train).parts for p in paths]
    if any(len(t) < 2 for t in tops):
        return [], None
    names = sorted({t[0] for t in tops})
    if len(names) < 2:
        return [], None
    return names, np.array([names.index(t[0]) for t in tops], dtype=np.int64)
