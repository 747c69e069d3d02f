"""The user's own images as a one-class dataset (`folder:PATH`).

Layout: PATH/train/** are normal training images (subfolders allowed), PATH/test/normal/** and
PATH/test/novel/** the test images (labels 0 and 1). When every training image sits in a direct
subfolder of train/ and there are two or more, those subfolders are the normal classes
(`train_groups`, named in `info["train_classes"]`), for detectors that learn them (`certainty`). Files and folders whose names start with a
dot are ignored; any other file must be a readable image or loading stops with its name.

Or MVTec AD's layout (read so when test/good/ is there and test/normal/ is not): PATH/train/good/
normal, PATH/test/good/ normal (label 0, kind "good"), PATH/test/<defect>/ novel (label 1, kind
<defect>; every defect folder, so one-vs-rest on "normal" tests all defects together, as above),
and, optionally, PATH/ground_truth/<defect>/<name>_mask.png the defect pixels of
test/<defect>/<name>.*. The masks become `test_masks` (resized by nearest neighbour to the images'
size, so still 0/1; zero for good images), with `test_kinds` and `test_has_mask`: a defect folder
without a ground_truth folder has no masks, and `pixel_masks` says so rather than measure without
it. A mask must have its image's size and hold 0/255 or 0/1; a mask without its image, or an image
without its mask in a ground_truth folder, stops loading with the file's name.

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
  PATH/test/novel/...   novel test images
or MVTec AD's:
  PATH/train/good/...   normal training images
  PATH/test/good/...    normal test images
  PATH/test/<defect>/...  novel test images, a folder for each kind of defect
  PATH/ground_truth/<defect>/<name>_mask.png  optional: the defect pixels of test/<defect>/<name>.*"""


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


def _read(source, name, max_pixels: int, to_array) -> np.ndarray:
    """`to_array` of the image in `source` (a path or a binary file object), its EXIF orientation
    applied; every failure a ValueError that starts with `name`."""
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
                return to_array(im)
    except Image.DecompressionBombError as e:
        raise ValueError(f"{name}: image too large, over the pixel limit ({e})") from e
    except UnidentifiedImageError as e:
        raise ValueError(f"{name}: not an image file Pillow can read") from e
    except (OSError, SyntaxError, EOFError) as e:
        raise ValueError(f"{name}: unreadable or truncated image ({e})") from e


def _decode(source, name, size: int, max_pixels: int) -> np.ndarray:
    """`source` (a path or a binary file object) -> uint8 (C, size, size); errors start with `name`."""
    pixels = _read(source, name, max_pixels, image_to_array)
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
    """Load a folder dataset, in either layout (see module doc), as an ImageDataset: test labels 0
    for normal (test/normal/ or test/good/), 1 for novel (test/novel/ or every defect folder)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"folder dataset {root} does not exist or is not a folder.\n{LAYOUT}")
    mvtec = is_mvtec_layout(root)
    kinds = mvtec_kinds(root) if mvtec else {"normal": root / "test" / "normal", "novel": root / "test" / "novel"}
    folders = [root / "train", *kinds.values()]
    files = [_images_in(folder) for folder in folders]
    # masks first: a layout mistake in ground_truth/ shows before the images' (long) decoding
    fields, more_info = ({}, {}) if not mvtec else mvtec_masks(root, dict(zip(kinds, files[1:])), size,
                                                               max_pixels, progress)
    loaded = load_images([p for paths in files for p in paths], size, max_pixels, progress, f"loading {root.name}")
    channels = channels_of(loaded)
    stacks, start = [], 0
    for paths in files:
        stacks.append(stack_images(loaded[start:start + len(paths)], channels))
        start += len(paths)

    counts = [len(paths) for paths in files[1:]]
    test_y = np.repeat(np.arange(len(kinds)) > 0, counts).astype(np.int64)  # the first kind is the normal one
    rel = lambda ps: [str(p.relative_to(root)) for p in ps]  # noqa: E731
    classes, groups = train_classes(folders[0], files[0])
    return ImageDataset(
        name=f"folder:{root.resolve().name}",
        train_x=stacks[0],
        train_y=np.zeros(len(files[0]), dtype=np.int64),
        test_x=np.concatenate(stacks[1:]),
        test_y=test_y,
        class_names=["normal", "novel"],
        source=str(root.resolve()),
        info={"root": str(root.resolve()), "train_files": rel(files[0]),
              "test_files": [f for paths in files[1:] for f in rel(paths)], "size": size,
              **({"train_classes": classes} if classes else {}), **more_info},
        train_groups=groups,
        **fields,
    )


def _images_in(folder: Path) -> list[Path]:
    """Every file under one part of a folder dataset; it must exist and hold one at least."""
    if not folder.is_dir():
        raise ValueError(f"folder dataset: {folder} is missing.\n{LAYOUT}")
    paths = list_images(folder)
    if not paths:
        raise ValueError(f"folder dataset: {folder} is empty (no images).\n{LAYOUT}")
    return paths


# --- MVTec AD's layout: test/good/, test/<defect>/, ground_truth/<defect>/<name>_mask.png -----------

MASK_SUFFIX = "_mask"  # ground_truth/<defect>/000_mask.png is the mask of test/<defect>/000.png


def is_mvtec_layout(root: Path) -> bool:
    """MVTec AD's layout: test/good/ and no test/normal/ (which keeps a folder in the first layout
    read as before, whatever else its test/ holds)."""
    return (root / "test" / "good").is_dir() and not (root / "test" / "normal").is_dir()


def mvtec_kinds(root: Path) -> dict[str, Path]:
    """{kind: its test folder}: "good" first, then every defect folder of test/ by name."""
    test = root / "test"
    loose = [p for p in sorted(test.iterdir()) if not p.name.startswith(".") and not p.is_dir()]
    if loose:
        raise ValueError(f"folder dataset: {loose[0]} is not in a folder of test/: in MVTec AD's layout every "
                         f"test image is in test/good/ or a test/<defect>/ folder.\n{LAYOUT}")
    defects = sorted(p.name for p in test.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != "good")
    if not defects:
        raise ValueError(f"folder dataset: {test} has good/ but no defect folder (test/<defect>/) of novel "
                         f"images.\n{LAYOUT}")
    return {kind: test / kind for kind in ["good", *defects]}


def mvtec_masks(root: Path, files: dict[str, list[Path]], size: int, max_pixels: int = DEFAULT_MAX_PIXELS,
                progress: bool = False) -> tuple[dict, dict]:
    """(ImageDataset fields, info entries) of the test images `files` ({kind: its images}, in test
    order): `test_kinds` and, where ground_truth/ has them, `test_masks` and `test_has_mask`; info
    says which defect kinds have no masks (then `pixel_masks` refuses)."""
    kinds = np.array([kind for kind, paths in files.items() for _ in paths])
    masked = ground_truth_folders(root, list(files))
    unmasked = [kind for kind in files if kind != "good" and kind not in masked]
    info = {"layout": "mvtec", "defect_kinds": list(files)[1:], "unmasked_kinds": unmasked}
    pairs = [(image, mask, kind) for kind, folder in masked.items()
             for image, mask in match_masks(folder, root / "test" / kind, files[kind]).items()]
    if len(unmasked) == len(files) - 1:
        return {"test_kinds": kinds}, info  # no defect kind has masks: no pixel metrics
    masks = np.zeros((len(kinds), size, size), np.uint8)
    row = {path: i for i, path in enumerate(path for paths in files.values() for path in paths)}
    emptied = []
    for image, mask, kind in tqdm(pairs, desc="loading masks", unit="mask", disable=not progress):
        full = read_mask(mask, image, max_pixels)
        if kind == "good" and full.any():
            raise ValueError(f"{mask}: marks defect pixels in {image}, a normal image (test/good/)")
        masks[row[image]] = resize_mask(full, size)
        if full.any() and not masks[row[image]].any():
            emptied.append(str(mask.relative_to(root)))
    info["masks_emptied_by_resize"] = emptied  # defects thinner than the resize's step
    return {"test_kinds": kinds, "test_masks": masks, "test_has_mask": ~np.isin(kinds, unmasked)}, info


def ground_truth_folders(root: Path, kinds: list[str]) -> dict[str, Path]:
    """{kind: ground_truth/<kind>/} for the kinds that have one; a file or folder there that is no
    test kind's stops loading with its name."""
    gt = root / "ground_truth"
    if not gt.is_dir():
        return {}
    found = {}
    for p in sorted(gt.iterdir()):
        if p.name.startswith("."):
            continue
        if not p.is_dir():
            raise ValueError(f"{p}: not in a defect folder; masks go in ground_truth/<defect>/")
        if p.name not in kinds:
            first = next(iter(list_images(p)), p)
            raise ValueError(f"{first}: a mask with no matching image: there is no test/{p.name}/ folder")
        found[p.name] = p
    return found


def match_masks(gt: Path, test: Path, images: list[Path]) -> dict[Path, Path]:
    """{image: its mask}: test/<kind>/<sub>/<name>.* <-> ground_truth/<kind>/<sub>/<name>_mask.*.
    Every mask needs its image, and every image of a kind with a ground_truth folder its mask."""
    by_name: dict[Path, Path] = {}
    for image in images:
        key = image.relative_to(test).with_suffix("")
        if key in by_name:
            raise ValueError(f"{by_name[key]} and {image}: two images of one name; a mask could not tell them apart")
        by_name[key] = image
    found: dict[Path, Path] = {}
    for mask in list_images(gt):
        rel = mask.relative_to(gt)
        key = rel.parent / rel.stem.removesuffix(MASK_SUFFIX)
        image = by_name.get(key) if rel.stem.endswith(MASK_SUFFIX) else None
        if image is None:
            raise ValueError(f"{mask}: a mask with no matching image (expected {test / key}.<ext>; a mask is "
                             f"named after its image, <name>{MASK_SUFFIX}.png)")
        if image in found:
            raise ValueError(f"{found[image]} and {mask}: two masks for {image}")
        found[image] = mask
    for image in images:
        if image not in found:
            key = image.relative_to(test).with_suffix("")
            raise ValueError(f"{image}: no mask for it (expected {gt / key}{MASK_SUFFIX}.png); every image of a "
                             f"defect kind with a ground_truth folder needs one")
    return found


def _mask_values(im: Image.Image) -> np.ndarray:
    """A mask's own values: grey, 1-bit, 16-bit, float and palette indices as stored (so 0/1 stays
    0/1); any other mode through grey."""
    if im.mode in ("1", "L", "P", "I", "F") or im.mode.startswith("I;16"):
        return np.asarray(im)
    return np.asarray(im.convert("L"))


def shown_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image as loaded, its EXIF rotation applied, read from its header."""
    with Image.open(path) as im:
        width, height = im.size
        return (height, width) if im.getexif().get(0x0112) in (5, 6, 7, 8) else (width, height)


def read_mask(mask: Path, image: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A ground-truth mask -> bool (H, W) at its own size: defect where the file is > 0 (MVTec's
    masks are 0/255). Refused, naming both files, when its size is not its image's (it would mark
    the wrong pixels) or it holds other values than 0 and 1 or 0 and 255 (a soft or colour map is
    no mask)."""
    values = _read(mask, mask, max_pixels, _mask_values)
    height, width = values.shape[:2]
    if (width, height) != shown_size(image):
        image_w, image_h = shown_size(image)
        raise ValueError(f"{mask}: mask is {width}x{height}, its image {image} is {image_w}x{image_h}")
    top = values.max()
    if top not in (0, 1, 255) or not ((values == 0) | (values == top)).all():
        shown = ", ".join(str(v) for v in np.unique(values)[:6])
        raise ValueError(f"{mask}: mask of {image} is not binary (values {shown}...); expected 0 and 255, "
                         "or 0 and 1")
    return values > 0


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """bool (H, W) -> uint8 (size, size) 0/1 by nearest neighbour: still binary, but a defect
    thinner than the step (H / size pixels) may fall between the pixels kept."""
    return np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((size, size), Image.Resampling.NEAREST))


def train_classes(train: Path, paths: list[Path]) -> tuple[list[str], np.ndarray | None]:
    """The direct subfolders of train/ as classes, when every image is in one and there are >= 2."""
    tops = [p.relative_to(train).parts for p in paths]
    if any(len(t) < 2 for t in tops):
        return [], None
    names = sorted({t[0] for t in tops})
    if len(names) < 2:
        return [], None
    return names, np.array([names.index(t[0]) for t in tops], dtype=np.int64)
