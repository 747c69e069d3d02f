"""ONNX export of a fitted detector's score, and scoring the exported file with ONNX Runtime.

One graph maps float32 images (N, C, H, W) in [-1, 1], as the detector was fitted on them
(`input_shape_`), to float32 novelty scores (N,), the batch axis free. The graph is what the
detector says its score is (`Detector.scoring_module`, for detectors with `exportable`): a
network and its error, a memory of normal vectors as a constant with a matrix product and a
top-k, a pretrained backbone with its resize, pooling and head. Nothing here knows a family; a
detector that cannot be exported raises ExportNotSupported naming itself, and this module adds
which detectors can (`registry.exportable_names`). ONNX Runtime's scores equal eager scores
within 1e-4 relative (tests/test_export.py, every exportable detector).

The threshold and what made the model travel as metadata in the file (`noveltykit.*` keys), and,
for a graph whose scoring module says how many images a call should hold (`images_per_call`: one
that holds a large matrix per image), that number as `batch_size`, which `OnnxDetector` follows.
`set_threshold` changes the threshold without re-exporting. Needs `pip install
'noveltykit[export]'` (onnx, onnxruntime).
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..detectors import ModelFileError
from ..detectors.base import ExportNotSupported, as_image_tensor
from ..detectors.registry import exportable_names
from ..fileio import atomic_write_bytes

PREFIX = "noveltykit."
DEFAULT_BATCH = 512  # images an ONNX Runtime call, unless the file says otherwise
INPUT_NOTE = "float32 (N, C, H, W) in [-1, 1]; uint8 pixels p map to p / 127.5 - 1"


def _require(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"{module} is needed for ONNX export and scoring; install it with "
                          "pip install 'noveltykit[export]' (or: pip install onnx onnxruntime)") from None


class Float32Scores(torch.nn.Module):
    """A scoring module's (N,) scores as float32, whatever it computed them in (some heads: float64)."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x).float()


def export_onnx(detector, path: str | Path, opset: int = 17) -> Path:
    """Write `detector`'s scoring graph to `path` with its threshold as metadata. A detector that
    cannot be exported (or not with its settings) raises ExportNotSupported, a ValueError."""
    try:
        module = detector.scoring_module()
    except ExportNotSupported as exc:
        raise ExportNotSupported(f"{exc}; detectors that export: {', '.join(exportable_names())}") from None
    meta = {"threshold": repr(float(detector.threshold_)), "detector": detector.name,
            "params": json.dumps(detector.get_params(), sort_keys=True),
            "input_shape": json.dumps(list(detector.input_shape_)), "input": INPUT_NOTE,
            "higher_is": "more novel", "version": __version__}
    if getattr(module, "images_per_call", None):  # a graph whose memory grows fast with its batch says
        meta["batch_size"] = str(int(module.images_per_call))
    return export_module(Float32Scores(module), detector.input_shape_, path, meta, opset)


def export_module(module: torch.nn.Module, input_shape: tuple[int, ...], path: str | Path,
                  metadata: dict[str, str] | None = None, opset: int = 17) -> Path:
    """Trace images (N, *input_shape) -> scores (N,) into an ONNX file, batch axis dynamic."""
    onnx = _require("onnx")
    path = Path(path)
    example = torch.zeros(2, *input_shape)
    buffer = io.BytesIO()  # traced in memory, written once: a killed export leaves the old file or none
    with warnings.catch_warnings():  # the TorchScript-based exporter announces its deprecation
        warnings.simplefilter("ignore")
        torch.onnx.export(module.cpu().eval(), (example,), buffer, input_names=["images"],
                          output_names=["scores"], dynamic_axes={"images": {0: "batch"}, "scores": {0: "batch"}},
                          opset_version=opset, dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    if metadata:
        _set_metadata(model, metadata)
    atomic_write_bytes(path, model.SerializeToString())
    return path


def _set_metadata(model, values: dict[str, str]) -> None:
    keep = [p for p in model.metadata_props if p.key[len(PREFIX):] not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = PREFIX + key, value


def _load(path: str | Path):
    """The ONNX model in `path`; a missing or unreadable file is a ModelFileError naming it."""
    onnx = _require("onnx")
    if not Path(path).is_file():
        raise ModelFileError(f"{path}: no such file")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and the like
        raise ModelFileError(f"{path}: not a readable ONNX file ({exc})") from None


def read_metadata(path: str | Path) -> dict[str, str]:
    model = _load(path)
    return {p.key[len(PREFIX):]: p.value for p in model.metadata_props if p.key.startswith(PREFIX)}


def set_threshold(path: str | Path, threshold: float) -> None:
    """Change the threshold stored in an exported file (the graph is untouched)."""
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    model = _load(path)
    if "threshold" not in {p.key[len(PREFIX):] for p in model.metadata_props if p.key.startswith(PREFIX)}:
        raise ModelFileError(f"{path}: not a noveltykit export (no {PREFIX}threshold metadata)")
    _set_metadata(model, {"threshold": repr(float(threshold))})
    atomic_write_bytes(path, model.SerializeToString())  # the old file or the new one, never half


class OnnxDetector:
    """An exported detector scored by ONNX Runtime: `decision_function`, `predict`, `threshold_`."""

    def __init__(self, path: str | Path, threads: int | None = None):
        ort = _require("onnxruntime")
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        if "threshold" not in self.metadata:
            raise ModelFileError(f"{self.path}: not a noveltykit export (no {PREFIX}threshold metadata)")
        self.threshold_ = float(self.metadata["threshold"])
        self.input_shape_ = tuple(json.loads(self.metadata["input_shape"]))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])

    def decision_function(self, X, batch_size: int | None = None) -> np.ndarray:
        """Scores of images as the detector takes them, `batch_size` a call (default: the file's
        `batch_size` metadata where it has one, else 512)."""
        batch_size = batch_size or int(self.metadata.get("batch_size", DEFAULT_BATCH))
        x = as_image_tensor(X, expect=self.input_shape_).numpy()
        parts = [self.session.run(["scores"], {"images": x[i:i + batch_size]})[0]
                 for i in range(0, len(x), batch_size)]
        return np.concatenate(parts).astype(np.float64)

    def predict(self, X) -> np.ndarray:
        return (self.decision_function(X) > self.threshold_).astype(np.int64)
