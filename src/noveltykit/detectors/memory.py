"""A novelty is novel once (tech report §5.3): a fitted kNN detector plus a bank of confirmed
novelties, so that an image like one already confirmed is no longer flagged.

    memory = NoveltyMemory.open(detector, "bank/")   # an existing bank, or an empty one
    memory.score(X)      # kNN score against normal memory + the confirmed bank
    memory.predict(X)    # score > detector.threshold_
    memory.confirm(X)    # these images are known novelties now; saved at once

Which detectors: `knn` (the bank holds flattened pixels, as its normal memory does) and
`feat-knn` (the bank holds the extractor's feature vectors prepared the way its head compares
them: unit length for cosine). The score is the detector's own: the same k, the same aggregate
or metric, the same distance code (`knn_distances` for the normal memory, `sq_dist_blocks` for the
bank, float64); the confirmed items are simply more neighbours. With an empty bank it is
`detector.decision_function(X)` exactly, and an image whose k nearest neighbours are all normal
scores exactly as without the bank. With k > 1 a confirmed item is one neighbour of k: an image
stops being flagged once its k nearest neighbours, normal or confirmed, are near enough.

The threshold stays `detector.threshold_`, fitted on normal validation images. Confirming
novelties only adds neighbours, so it can only lower scores; it does not change what a normal
image's false-alarm rate was calibrated on, and moving the threshold with the bank would let the
confirmed novelties, not the normal data, decide how many normal images raise an alarm.

Habituation (forgetting): every confirmed item has a weight, 1 when it is confirmed. Each later
call to `confirm` multiplies the weights of the items already in the bank by (1 - habituation).
An item's distance to an image counts as distance / weight, so a faded memory is farther away
and suppresses less; an item whose weight falls below 1e-3 is dropped. habituation = 0: items
never fade. E.g. habituation = 0.5: after 10 further confirm calls an item's weight is 2^-10 and
it is gone. Size cap: at most `max_items` items; beyond it the oldest are dropped.

On disk (when a folder is given): `memory.safetensors` (vectors, weights, ids: the insertion
number of each item) and `memory.json` (which detector, the model's identity: its training
fingerprint and representation, habituation, max_items, the insertion counter), written as one
folder swapped in whole after every `confirm`, so a crash leaves the old bank or the new one. A
bank saved for another model (other training data, another representation) is refused. There is
no locking: one process should confirm into a bank at a time.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save_file as save_tensor_file

from ..fileio import atomic_dir, check_replaceable
from .base import Detector, as_image_tensor
from .distances import DEFAULT_BLOCK_ELEMS, flatten, sq_dist_blocks
from .knn import KNNDetector, knn_distances

if TYPE_CHECKING:
    from .pretrained import FeatKNNDetector

MEMORY_FORMAT, MEMORY_SCHEMA = "noveltykit-novelty-memory", 1
BANK_FILE, BANK_CONFIG = "memory.safetensors", "memory.json"
BANK_FILES = (BANK_FILE, BANK_CONFIG)
MIN_WEIGHT = 1e-3  # a faded item below this weight is dropped
SERVED = ("knn", "feat-knn")


class _PixelKNN:
    """`knn`: flattened pixels (float32, as its memory_); per-neighbour distance: Euclidean."""

    def __init__(self, det: KNNDetector):
        self.det, self.k, self.block = det, det.k, det.max_block_elems
        self.dim, self.dtype = int(np.prod(det.input_shape_)), torch.float32

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        return flatten(x)

    def normal_neighbours(self, q: torch.Tensor) -> torch.Tensor:
        """(N, k) float64 distances to the k nearest normal images, as the detector finds them."""
        return knn_distances(q, self.det.memory_, self.k, self.block).double()

    def distance(self, d2: torch.Tensor) -> torch.Tensor:
        return d2.sqrt()

    def aggregate(self, d: torch.Tensor) -> np.ndarray:
        d = d.float()  # the detector reduces its float32 distances; normal ones round-trip exactly
        reduce = {"mean": lambda t: t.mean(1), "sum": lambda t: t.sum(1), "max": lambda t: t[:, -1]}
        return np.asarray(reduce[self.det.aggregate](d).numpy(), np.float64)

    def representation(self) -> dict:
        return {"kind": "pixels", "input_shape": list(self.det.input_shape_), "dim": self.dim}


class _FeatureKNN:
    """`feat-knn`: feature vectors prepared by its head (float64, unit length for cosine);
    per-neighbour distance: 1 - cos or Euclidean, as `KNNHead.score`."""

    def __init__(self, det: FeatKNNDetector):
        self.det, self.head = det, det.head_
        self.k, self.block, self.metric = self.head.k, DEFAULT_BLOCK_ELEMS, self.head.metric
        self.dim, self.dtype = int(det.feature_dim_), torch.float64

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        return self.head._prepare(self.det.features(x))

    def normal_neighbours(self, q: torch.Tensor) -> torch.Tensor:
        d = knn_distances(q, self.head.memory_, self.k).double()
        return d.pow(2) / 2 if self.metric == "cosine" else d  # unit vectors: |a - b|^2 = 2 - 2 cos

    def distance(self, d2: torch.Tensor) -> torch.Tensor:
        return d2 / 2 if self.metric == "cosine" else d2.sqrt()

    def aggregate(self, d: torch.Tensor) -> np.ndarray:
        return d.mean(1).numpy()

    def representation(self) -> dict:
        det = self.det
        return {"kind": "features", "backbone": det.backbone, "backbone_sha256": det.weights_sha256_,
                "size": det.size, "input_scaling": det.input_scaling, "stages": det.stages,
                "metric": self.metric, "dim": self.dim}


def _adapter(detector: Detector):
    if not isinstance(detector, Detector):
        raise TypeError(f"NoveltyMemory wraps a fitted detector, got {type(detector).__name__}")
    if isinstance(detector, KNNDetector):
        detector._check_fitted()
        return _PixelKNN(detector)
    from .pretrained import FeatKNNDetector  # on use: the pretrained family imports scikit-learn, the backbone

    if not isinstance(detector, FeatKNNDetector):
        raise ValueError(f"NoveltyMemory serves the kNN detectors only ('knn' on pixels, 'feat-knn' on "
                         f"pretrained features), not {detector.name or type(detector).__name__!r}: the "
                         "confirmed novelties join the nearest-neighbour search")
    detector._check_fitted()
    return _FeatureKNN(detector)


def _model_identity(detector: Detector, adapter) -> dict:
    """What a bank belongs to: the detector, its training data, its representation."""
    fp = getattr(detector, "training_", {}).get("train_fingerprint")
    if fp is None:  # a model saved without training facts: the normal memory itself
        normal = detector.memory_ if isinstance(detector, KNNDetector) else detector.head_.features_
        fp = "memory:" + hashlib.sha256(normal.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]
    return {"detector": detector.name, "train_fingerprint": fp, "representation": adapter.representation()}


def _check_habituation(habituation: float) -> float:
    h = float(habituation)
    if not 0.0 <= h <= 1.0:
        raise ValueError(f"habituation must be in [0, 1] (0: never fade), got {habituation}")
    return h


def _check_max_items(max_items: int) -> int:
    if int(max_items) < 1:
        raise ValueError(f"max_items must be >= 1, got {max_items}")
    return int(max_items)


class GrowingRows:
    """Rows kept with spare capacity, so a bank that grows a confirm at a time is not allocated anew
    each time (a served memory's RSS grew by many times the bank's size that way, the allocator
    keeping each freed copy). `append(n, new)` writes past the first `n` rows in place when this
    buffer's filled rows end there, else copies into a new buffer; rows are only ever written past
    every earlier view's end, so a view taken before (the bank a server is still scoring against,
    serve_memory's copy-on-write) never changes."""

    def __init__(self, rows: torch.Tensor):
        self.buffer, self.filled = rows.contiguous(), len(rows)

    def append(self, n: int, new: torch.Tensor) -> tuple[GrowingRows, torch.Tensor]:
        """(the buffer holding them, the view of its first n + len(new) rows: the first n, then `new`)."""
        end = n + len(new)
        if self.filled != n or end > len(self.buffer):  # another view grew it, or it is full
            grown = GrowingRows(torch.empty(max(end, 2 * len(self.buffer)), *new.shape[1:], dtype=new.dtype))
            grown.buffer[:n], grown.filled = self.buffer[:n], n
            return grown.append(n, new)
        self.buffer[n:end] = new
        self.filled = end
        return self, self.buffer[:end]


class NoveltyMemory:
    """A fitted `knn` or `feat-knn` detector plus a bank of confirmed novelties (module docstring).

    `directory`: where the bank is saved after every `confirm` (None: in memory only). A folder
    that already holds a bank is refused here; continue it with `NoveltyMemory.open`.
    """

    def __init__(self, detector: Detector, directory: str | Path | None = None, *, habituation: float = 0.0,
                 max_items: int = 10_000):
        self.detector = detector
        self._rep = _adapter(detector)
        self.habituation, self.max_items = _check_habituation(habituation), _check_max_items(max_items)
        self.directory = None if directory is None else Path(directory)
        if self.directory is not None:
            _check_folder(self.directory)
            if (self.directory / BANK_CONFIG).exists():
                raise ValueError(f"{self.directory}: already holds a novelty memory; continue it with "
                                 "NoveltyMemory.open(detector, directory)")
        self.identity = _model_identity(detector, self._rep)
        self._set(torch.empty(0, self._rep.dim, dtype=self._rep.dtype), torch.empty(0, dtype=torch.float64),
                  torch.empty(0, dtype=torch.int64))
        self.count = 0  # items ever confirmed: the next item's id
        self.confirms = 0  # confirm calls so far

    # --- opening a saved bank ----------------------------------------------------------------
    @classmethod
    def open(cls, detector: Detector, directory: str | Path, *, habituation: float | None = None,
             max_items: int | None = None) -> NoveltyMemory:
        """The bank saved in `directory` for this detector, or an empty one saved there from the
        first `confirm`. `habituation` / `max_items`: None = the saved values (new bank: 0 and
        10000); given = used from now on (a smaller cap drops the oldest items at once)."""
        directory = Path(directory)
        _check_folder(directory)
        if not (directory / BANK_CONFIG).exists():
            return cls(detector, directory, habituation=0.0 if habituation is None else habituation,
                       max_items=10_000 if max_items is None else max_items)
        config, tensors = _read_bank(directory)
        memory = cls(detector, None, habituation=config["habituation"], max_items=config["max_items"])
        _check_same_model(directory, config["model"], memory.identity)
        vectors, weights, ids = tensors["vectors"], tensors["weights"].double(), tensors["ids"].long()
        if vectors.ndim != 2 or vectors.shape[1] != memory._rep.dim or not len(vectors) == len(weights) == len(ids):
            raise ValueError(f"{directory / BANK_FILE}: holds vectors of shape {tuple(vectors.shape)}, but this "
                             f"model's representation has {memory._rep.dim} dimensions; the bank was saved "
                             "for a different model")
        memory._set(vectors.to(memory._rep.dtype), weights, ids)
        memory.count, memory.confirms = int(config["count"]), int(config["confirms"])
        memory.directory = directory
        if habituation is not None:
            memory.habituation = _check_habituation(habituation)
        if max_items is not None:
            memory.max_items = _check_max_items(max_items)
            memory._cap()
        return memory

    # --- the bank ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def weights(self) -> np.ndarray:
        """Each confirmed item's weight, oldest first."""
        return self._weights.numpy().copy()

    @property
    def ids(self) -> np.ndarray:
        """Each confirmed item's insertion number (0 = the first ever confirmed), oldest first."""
        return self._ids.numpy().copy()

    @property
    def vectors(self) -> torch.Tensor:
        """The confirmed items in the detector's representation, oldest first."""
        return self._vectors.clone()

    def _set(self, vectors: torch.Tensor, weights: torch.Tensor, ids: torch.Tensor) -> None:
        self._vectors, self._weights, self._ids = vectors.contiguous(), weights.contiguous(), ids.contiguous()
        self._bank64 = self._vectors.double()
        self._rows32, self._rows64 = GrowingRows(self._vectors), GrowingRows(self._bank64)

    def _append(self, new: torch.Tensor) -> None:
        """`new` vectors after the bank's, in the stores' spare capacity (`GrowingRows`)."""
        n = len(self._vectors)
        self._rows32, self._vectors = self._rows32.append(n, new)
        self._rows64, self._bank64 = self._rows64.append(n, new.double())

    def _cap(self) -> None:
        if len(self) > self.max_items:
            keep = slice(len(self) - self.max_items, None)  # the newest
            self._set(self._vectors[keep], self._weights[keep], self._ids[keep])

    def _represent(self, X) -> torch.Tensor:
        return self._rep.represent(as_image_tensor(X, expect=self.detector.input_shape_))

    # --- the contract --------------------------------------------------------------------------
    def score(self, X) -> np.ndarray:
        """The detector's kNN score with the confirmed items as extra neighbours (distance / weight)."""
        q = self._represent(X)
        best = self._rep.normal_neighbours(q)  # (N, k), ascending
        if len(self):
            k, q64 = self._rep.k, q.double()
            for qs, blocks in sq_dist_blocks(q64, self._bank64, self._rep.block):
                b = best[qs]
                for rs, d2 in blocks:  # running top-k over bank blocks, as knn_distances does
                    cand = self._rep.distance(d2) / self._weights[None, rs]
                    b = torch.cat([b, cand], dim=1).topk(k, dim=1, largest=False).values
                best[qs] = b
        return self._rep.aggregate(best)

    def predict(self, X) -> np.ndarray:
        """0 normal / 1 novel: score above the detector's threshold (fitted on normal validation
        images, unchanged by the bank; see the module docstring)."""
        return (self.score(X) > self.detector.threshold_).astype(np.int64)

    def confirm(self, X) -> int:
        """Remember these images as confirmed novelties; older items fade by (1 - habituation).
        Saved at once when the memory has a folder. Returns the bank's size."""
        new = self._represent(X).to(self._rep.dtype)
        weights = self._weights * (1.0 - self.habituation)
        keep = weights >= MIN_WEIGHT
        n = len(new)
        weights = torch.cat([weights[keep], torch.ones(n, dtype=torch.float64)])
        ids = torch.cat([self._ids[keep], torch.arange(self.count, self.count + n, dtype=torch.int64)])
        if bool(keep.all()):  # the common case: nothing faded out, the vectors grow in place
            self._append(new)
            self._weights, self._ids = weights, ids
        else:
            self._set(torch.cat([self._vectors[keep], new]), weights, ids)
        self.count += n
        self.confirms += 1
        self._cap()
        if self.directory is not None:
            self.save()
        return len(self)

    def save(self, directory: str | Path | None = None) -> Path:
        """Write the bank to `directory` (default: its own folder), swapped in whole."""
        directory = Path(directory) if directory is not None else self.directory
        if directory is None:
            raise ValueError("this memory has no folder; pass one to save(directory)")
        _check_folder(directory)
        config = {"format": MEMORY_FORMAT, "schema": MEMORY_SCHEMA, "model": self.identity,
                  "habituation": self.habituation, "max_items": self.max_items, "count": self.count,
                  "confirms": self.confirms, "n_items": len(self), "min_weight": MIN_WEIGHT}
        with atomic_dir(directory) as tmp:
            # written from the tensors and hashed from the file: no copy of the bank as bytes
            save_tensor_file({"vectors": self._vectors, "weights": self._weights, "ids": self._ids}, tmp / BANK_FILE)
            with open(tmp / BANK_FILE, "rb") as f:
                config["bank_sha256"] = hashlib.file_digest(f, "sha256").hexdigest()
            (tmp / BANK_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        return directory

    def __repr__(self) -> str:
        return (f"NoveltyMemory({self.detector.name}, {len(self)} confirmed, habituation={self.habituation}, "
                f"max_items={self.max_items}, directory={str(self.directory) if self.directory else None!r})")


def _check_folder(directory: Path) -> None:
    """A bank's folder holds the bank's files and nothing else (it is replaced whole on save)."""
    check_replaceable(directory, BANK_FILES, "a novelty memory")


def _read_bank(directory: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    config_path, bank_path = directory / BANK_CONFIG, directory / BANK_FILE
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{config_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != MEMORY_FORMAT:
        raise ValueError(f"{config_path}: not a noveltykit novelty memory")
    if config.get("schema") != MEMORY_SCHEMA:
        raise ValueError(f"{config_path}: schema {config.get('schema')!r}; this noveltykit reads {MEMORY_SCHEMA}")
    for key in ("model", "habituation", "max_items", "count", "confirms", "bank_sha256"):
        if key not in config:
            raise ValueError(f"{config_path}: missing key {key!r}")
    if not bank_path.is_file():
        raise ValueError(f"{bank_path}: missing")
    data = bank_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != config["bank_sha256"]:
        raise ValueError(f"{bank_path}: sha256 differs from the one in {BANK_CONFIG} (changed or truncated)")
    try:
        tensors = load_tensors(data)
    except Exception as exc:  # safetensors raises its own error types
        raise ValueError(f"{bank_path}: not a readable safetensors file ({exc})") from None
    for key in ("vectors", "weights", "ids"):
        if key not in tensors:
            raise ValueError(f"{bank_path}: missing tensor {key!r}")
    return config, tensors


def _check_same_model(directory: Path, saved: dict, current: dict) -> None:
    if saved.get("detector") != current["detector"]:
        raise ValueError(f"{directory}: this novelty memory was saved for a different model (a "
                         f"{saved.get('detector')!r} detector, this one is {current['detector']!r})")
    if saved.get("representation") != current["representation"]:
        raise ValueError(f"{directory}: this novelty memory was saved for a different model: its items are "
                         f"{saved.get('representation')}, this model compares {current['representation']}")
    if saved.get("train_fingerprint") != current["train_fingerprint"]:
        raise ValueError(f"{directory}: this novelty memory was saved for a different model (training "
                         f"fingerprint {saved.get('train_fingerprint')}, this model's is "
                         f"{current['train_fingerprint']}); use a new folder for this model")
