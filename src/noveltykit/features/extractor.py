"""Images -> pooled pretrained features: (N, C, H, W) in [-1, 1] or uint8 -> (N, D) float32.

Each batch is made 3-channel (grey repeated), resized to `size` x `size` (bilinear, antialiased
when shrinking), scaled for the network (`pm1`: the [-1, 1] images as they are; `imagenet`:
[0, 1] then ImageNet mean/std), run through the frozen backbone in eval mode, and every requested
stage is average-pooled over space; the pooled stages are concatenated in network order.

Backbones (`backbone`): EfficientNet-Lite0 (the default), -Lite1 and -Lite2, frozen ImageNet
classifiers (`nets/efficientnet_lite.py`; NATIVE_SIZE holds the resolution each was trained at;
`size` stays the caller's choice). Options on the pooled vectors, the same for every engine:
`tta="flip"` averages each image's features with its horizontal mirror's; `stage_norm=True`
scales each pooled stage to unit L2 norm before they are concatenated (a 1280-d head would
otherwise drown a 112-d stage). Keys gain `tta` / `stage_norm` only when they are on, so the
default settings' cached features keep their keys.

Every network call sees exactly `batch_size` images (the last batch is padded with copies):
convolution kernels pick other code paths at other batch sizes, so an image's features would
otherwise change in the last float bits with how many images came with it.

Engines (`engine`): "torch" runs the network eagerly (the reference); "onnxruntime" runs it
frozen, exported once per process to ONNX, BatchNorm folded and fused by ONNX Runtime's graph
optimiser (2.3-2.5x eager torch's speed on a CPU: docs/pretrained.md); "auto" (the default) takes
ONNX Runtime on a CPU where it and onnx are installed, else torch. The two agree within
FEATURE_TOLERANCE; cached features are keyed by engine, so one engine's never stand in for the
other's.

ONNX export (`graph(shape)`, a `FeatureGraph`): everything above for images of one shape as one
traceable fp32 module: the 3 channels, the resize as two constant matrices (torch exports no
antialiased resize; a resize is linear along each axis, so `resize_matrix` takes each axis's
weights from `F.interpolate` itself), the scaling, the backbone and pooling, the flip and stage norm.

Precision (`precision`): "fp32" (the default) or "bf16", where the CPU computes bf16 natively
(AVX512-BF16 or AMX, `hardware.native_bf16_cpu`) or on a GPU: the backbone traced and frozen by
TorchScript under bf16 autocast, channels-last, 16 images a call: 1.1x ONNX Runtime's fp32 rate on
two idle Xeon cores, slower on shared ones; its features are not within FEATURE_TOLERANCE of
fp32's, its AUROC moved by up to 0.003 (docs/pretrained.md), so it is not the default. Elsewhere
bf16 is emulated, many times slower: it warns once and runs fp32.
"""
from __future__ import annotations

import functools
import re
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib.util import find_spec

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.images import to_float
from ..hardware import native_bf16_cpu
from ..nets.efficientnet_lite import NATIVE_SIZE, STAGES, load_lite, stage_channels
from .weights import BACKBONES, weights_path, weights_sha256

INPUT_SCALINGS = ("pm1", "imagenet")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MIN_SIZE = 32  # the backbone downsamples 32x: smaller inputs leave nothing to pool
# Images per network call, (CPU, GPU), when batch_size is None: on a CPU small batches stay in
# cache and run faster per image; a GPU wants large ones. ONNX Runtime on a CPU is fastest at 4
# (measured at 1-32, 224 and 128 px: docs/pretrained.md).
DEFAULT_BATCH = (8, 128)
ONNX_BATCH = 4
PREPARED_CALLS = 32  # ONNX Runtime calls whose input torch prepares at once
# Bump when preprocessing or pooling changes what features come out: it invalidates caches.
EXTRACTOR_VERSION = 1
ENGINES = ("auto", "torch", "onnxruntime")
TTAS = ("none", "flip")  # test-time augmentation: "flip" averages with the horizontal mirror
STAGE_NORM_EPS = 1e-12  # a stage whose pooled vector is all zeros stays zeros
PRECISIONS = ("fp32", "bf16")
BF16_BATCH = 16  # the frozen bf16 network's fastest call at 128 and 224 px (measured at 4-16)
# |onnxruntime - torch| on a feature, relative to the batch's largest feature: measured up to
# 6e-6 (128 px) on cifar10-jpeg; tests/test_feature_engines.py holds every kernel path to this
FEATURE_TOLERANCE = 5e-5


def parse_stages(stages: str) -> tuple[int | str, ...]:
    """'last' or e.g. '4,5,last' / '4+5+last' (a comma would split a command-line method spec)
    -> (4, 5, 'last'): unique stages in network order."""
    parsed: list[int | str] = []
    for item in re.split(r"[,+]", str(stages)):
        item = item.strip().lower()
        stage = int(item) if item.lstrip("-").isdigit() else item
        if stage not in STAGES:
            raise ValueError(f"stages: {item!r} is not a stage; use 0 (stem), 1..7 (block groups) "
                             f"or 'last' (the 1280-d head), joined by + or a comma, e.g. '4+5+last'")
        if stage not in parsed:
            parsed.append(stage)
    return tuple(sorted(parsed, key=lambda s: 99 if s == "last" else s))


def stages_label(stages: tuple[int | str, ...]) -> str:
    """The canonical spelling, e.g. '4+5+last': what parameters, keys and labels show."""
    return "+".join(map(str, stages))


def resolve_device(device: str) -> str:
    """'auto' = a GPU when present; a model fitted on a GPU still scores where there is none."""
    if device == "auto" or device.startswith("cuda"):
        return device.replace("auto", "cuda") if torch.cuda.is_available() else "cpu"
    return device


@functools.lru_cache(maxsize=4)
def load_backbone(backbone: str, device: str = "cpu") -> torch.nn.Module:
    """The frozen pretrained network, loaded once per process and device (it is never modified)."""
    weights_sha256(backbone)  # a damaged or foreign file fails here, before it is used
    return load_lite(weights_path(backbone), backbone).to(device)


def onnxruntime_version() -> str | None:
    """The installed ONNX Runtime's version, or None."""
    try:
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


class _Pooled(torch.nn.Module):
    """The backbone with the extractor's pooling: what is exported for ONNX Runtime."""

    def __init__(self, net: torch.nn.Module, stages: tuple[int | str, ...]):
        super().__init__()
        self.net, self.stages = net, stages

    def forward(self, x):
        maps = self.net.stage_maps(x, self.stages)
        return torch.cat([maps[s].mean(dim=(2, 3)) for s in self.stages], dim=1)


@functools.lru_cache(maxsize=4)
def onnx_session(backbone: str, size: int, stages: tuple[int | str, ...], batch: int, threads: int):
    """An ONNX Runtime session of the frozen backbone + pooling for (batch, 3, size, size) inputs,
    exported once per process (about a second); every graph optimisation on, `threads` threads."""
    import io

    import onnxruntime as ort

    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the exporter's notes on shape inference: nothing to act on
        warnings.simplefilter("ignore")
        torch.onnx.export(_Pooled(load_backbone(backbone), stages).eval(), (torch.zeros(batch, 3, size, size),),
                          buffer, input_names=["images"], output_names=["features"], dynamo=False, opset_version=17)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=4)
def bf16_module(backbone: str, size: int, stages: tuple[int | str, ...], batch: int, device: str):
    """The backbone + pooling for (batch, 3, size, size) channels-last inputs, traced under bf16
    autocast and frozen (BatchNorm folded) on a CPU; eager under autocast on a GPU."""
    pooled = _Pooled(load_backbone(backbone, device), stages).eval().to(memory_format=torch.channels_last)
    if torch.device(device).type != "cpu":
        return pooled
    example = torch.zeros(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        warnings.simplefilter("ignore")  # the tracer's notes on SAME padding's shape arithmetic
        return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(pooled, example).eval()))


_bf16_warned = False


def bf16_in_use(precision: str, device: str) -> bool:
    """Whether `precision` runs bf16 on `device`; on a CPU without native bf16 warns once, False."""
    global _bf16_warned
    if precision != "bf16":
        return False
    if device != "cpu" or native_bf16_cpu():
        return True
    if not _bf16_warned:
        _bf16_warned = True
        warnings.warn(f"precision='bf16': this CPU has no native bf16 in use (torch kernels "
                      f"{torch.backends.cpu.get_cpu_capability()}), where it is emulated many times slower; "
                      "features are computed in fp32", RuntimeWarning, stacklevel=3)
    return False


def resize_matrix(shape: tuple[int, int], size: int, axis: int, antialias: bool) -> torch.Tensor:
    """(size, shape[axis]) float32: `prepare`'s bilinear resize of (H, W) images to size x size
    along `axis` (0: rows, 1: columns) as a matrix, each column the resized unit vector. Taken
    from F.interpolate on images of this very shape, constant along the other axis (whose weights
    sum to 1), so every weight is the one it uses; a few at a time, to bound the memory."""
    n_in, other = shape[axis], shape[1 - axis]
    step = max(1, (1 << 22) // max(shape[0] * shape[1], size * size))  # 16 MB in, 16 MB out at most
    columns = []
    for start in range(0, n_in, step):
        basis = torch.eye(n_in)[start:start + step]  # (k, n_in): unit vectors
        images = basis[:, None, :, None].expand(-1, 1, n_in, other)
        images = images if axis == 0 else images.transpose(2, 3)
        out = F.interpolate(images.contiguous(), size=(size, size), mode="bilinear", align_corners=False,
                            antialias=antialias)
        columns.append(out[:, 0, :, 0] if axis == 0 else out[:, 0, 0, :])
    return torch.cat(columns).T.contiguous()


class InputGraph(torch.nn.Module):
    """`FeatureExtractor.prepare` for float images (N, C, H, W) in [-1, 1] of one shape, as one
    module (ONNX export): 3 channels, the resize as two matrices (`resize_matrix`), the scaling."""

    def __init__(self, extractor: "FeatureExtractor", shape: tuple[int, int, int]):
        super().__init__()
        channels, height, width = (int(s) for s in shape)
        if channels not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels, got {channels}")
        size = extractor.size
        self.grey, self.resize = channels == 1, (height, width) != (size, size)
        if self.resize:
            antialias = size < max(height, width)  # as `prepare`
            self.register_buffer("rows", resize_matrix((height, width), size, 0, antialias))
            self.register_buffer("cols_t", resize_matrix((height, width), size, 1, antialias).T.contiguous())
        self.imagenet = extractor.input_scaling == "imagenet"
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grey:
            x = x.repeat(1, 3, 1, 1)
        if self.resize:
            x = torch.matmul(torch.matmul(self.rows, x), self.cols_t)
        return ((x + 1) / 2 - self.mean) / self.std if self.imagenet else x


class FeatureGraph(torch.nn.Module):
    """`FeatureExtractor.__call__` for float images (N, C, H, W) in [-1, 1] of one shape, as one
    fp32 module (ONNX export): `InputGraph`, the backbone's pooled stages, flip averaging and
    stage norm -> (N, dim) float32."""

    def __init__(self, extractor: "FeatureExtractor", shape: tuple[int, int, int]):
        super().__init__()
        self.prepare = InputGraph(extractor, shape)
        self.net, self.stages = load_backbone(extractor.backbone), extractor.stages
        self.flip, self.dims = extractor.tta == "flip", extractor.stage_dims if extractor.stage_norm else ()

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        maps = self.net.stage_maps(x, self.stages)
        return torch.cat([maps[s].mean(dim=(2, 3)) for s in self.stages], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prepare(x)
        f = (self.pooled(x) + self.pooled(x.flip(-1))) / 2 if self.flip else self.pooled(x)
        if self.dims:
            parts = torch.split(f, list(self.dims), dim=1)
            f = torch.cat([p / p.norm(dim=1, keepdim=True).clamp(min=STAGE_NORM_EPS) for p in parts], dim=1)
        return f


class FeatureExtractor:
    """Callable: images -> (N, dim) features. Cheap to build; the network loads on first use."""

    def __init__(self, backbone: str = "efficientnet-lite0", size: int = 224, input_scaling: str = "pm1",
                 stages: str = "last", batch_size: int | None = None, device: str = "cpu",
                 progress: bool = False, engine: str = "auto", precision: str = "fp32",
                 tta: str = "none", stage_norm: bool = False):
        if backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {backbone!r}; available: {', '.join(BACKBONES)}")
        if int(size) < MIN_SIZE:
            raise ValueError(f"size must be >= {MIN_SIZE}, got {size}")
        if input_scaling not in INPUT_SCALINGS:
            raise ValueError(f"input_scaling must be one of {INPUT_SCALINGS}, got {input_scaling!r}")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        self.backbone, self.size, self.input_scaling = backbone, int(size), input_scaling
        self.stages = parse_stages(stages)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.device, self.progress = device, progress
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        self.engine = engine
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        if tta not in TTAS:
            raise ValueError(f"tta must be one of {TTAS}, got {tta!r}")
        if not isinstance(stage_norm, (bool, np.bool_)):
            raise ValueError(f"stage_norm must be True or False, got {stage_norm!r}")
        self.tta, self.stage_norm = tta, bool(stage_norm)

    @property
    def native_size(self) -> int:
        """The resolution the backbone's ImageNet weights were trained at (`size` need not be it)."""
        return NATIVE_SIZE[self.backbone]

    @property
    def stage_dims(self) -> tuple[int, ...]:
        """Length of each pooled stage, in the order they are concatenated."""
        channels = stage_channels(self.backbone)
        return tuple(channels[s] for s in self.stages)

    @property
    def resolved_engine(self) -> str:
        """The engine that runs: "onnxruntime", "torch" or "torch-bf16" (see the module docstring)."""
        if bf16_in_use(self.precision, resolve_device(self.device)):
            return "torch-bf16"
        on_cpu = resolve_device(self.device) == "cpu"
        installed = onnxruntime_version() is not None and find_spec("onnx") is not None  # run; export
        if self.engine == "onnxruntime":
            if not installed:
                raise ImportError("engine='onnxruntime' needs ONNX Runtime and onnx: pip install 'noveltykit[pretrained]'")
            if not on_cpu:
                raise ValueError("engine='onnxruntime' runs on the CPU; use engine='torch' on a GPU")
            return "onnxruntime"
        if self.engine == "auto" and on_cpu and installed:
            return "onnxruntime"
        return "torch"

    @property
    def dim(self) -> int:
        return sum(self.stage_dims)

    def key(self) -> dict:
        """Everything that changes the features; needs the weights package (for their sha256)."""
        key = {"backbone": self.backbone, "size": self.size, "input_scaling": self.input_scaling,
               "stages": stages_label(self.stages), "weights_sha256": weights_sha256(self.backbone),
               "extractor_version": EXTRACTOR_VERSION}
        engine = self.resolved_engine
        if engine != "torch":  # torch's keys stay as they were: old caches still serve
            key["engine"] = f"onnxruntime {onnxruntime_version()}" if engine == "onnxruntime" else engine
            key["batch"] = self.per_call(resolve_device(self.device))  # the last float bits depend on it
        if engine == "torch-bf16":
            key["precision"] = "bf16"
        if self.tta != "none":  # the options join the key only when on: default keys stay as they were
            key["tta"] = self.tta
        if self.stage_norm:
            key["stage_norm"] = True
        return key

    def per_call(self, device: str) -> int:
        """Images per network call: `batch_size`, else the engine's fastest."""
        engine = self.resolved_engine
        if self.batch_size:
            return self.batch_size
        if engine == "onnxruntime":
            return ONNX_BATCH
        return BF16_BATCH if engine == "torch-bf16" else DEFAULT_BATCH[torch.device(device).type != "cpu"]

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A float batch in [-1, 1] -> the network's input: 3 channels, size x size, scaled."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(f"images must have 1 or 3 channels, got {x.shape[1]}")
        if tuple(x.shape[2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=self.size < max(x.shape[2:]))
        if self.input_scaling == "imagenet":
            mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
            x = ((x + 1) / 2 - mean) / std
        return x.contiguous()

    def _run(self, images, head, progress: bool | None = None) -> np.ndarray:
        """`head(net, x, per_call)`: a prepared chunk (a whole number of calls) -> its features."""
        return torch.cat(list(self.chunks(images, head, progress))).numpy()

    def chunks(self, images, head, progress: bool | None = None) -> Iterator[torch.Tensor]:
        """`head(net, x, per_call)` on each prepared chunk of the images (a whole number of calls,
        padded), its output float32 on the CPU, one chunk at a time and in order: for outputs too
        large to hold for every image at once (patch feature maps)."""
        if len(images) == 0:
            raise ValueError("no images to extract features from")
        device = resolve_device(self.device)
        net = load_backbone(self.backbone, device)
        per_call = self.per_call(device)
        # ONNX Runtime's small calls: the input is prepared for several at once (its per-call cost
        # in torch was a third of the time at 128 px); the calls see the same images either way
        chunk = per_call * (PREPARED_CALLS if self.resolved_engine == "onnxruntime" else 1)
        bar = tqdm(range(0, len(images), chunk), desc=f"{self.backbone} features at {self.size}px",
                   unit="batch", disable=not (self.progress if progress is None else progress), leave=False)
        for i in bar:
            # inference mode per chunk, not around the yield: the caller's code runs between chunks
            with torch.inference_mode():
                # uint8 is scaled chunk by chunk: a whole dataset as float32 would be 4x its size
                batch = to_float(images[i:i + chunk]).to(device)
                n, padded = len(batch), -(-len(batch) // per_call) * per_call
                if n < padded:  # pad: convolutions give bitwise other results at other batch sizes
                    batch = torch.cat([batch, batch[-1:].expand(padded - n, -1, -1, -1)])
                out = head(net, self.prepare(batch), per_call)[:n].float().cpu()
            yield out.clone()  # a normal tensor: an inference tensor refuses in-place updates later

    def _frozen(self, _net, x: torch.Tensor, per_call: int) -> torch.Tensor:
        """ONNX Runtime: with several threads and enough calls, one single-threaded run per thread
        at once (1.1-1.2x one run on all threads: no synchronisation inside each operator;
        benchmarks/onnx_threads.py), else one run on all threads. Either gives the same features."""
        threads = torch.get_num_threads()
        calls = [x[j:j + per_call].numpy() for j in range(0, len(x), per_call)]
        parallel = threads > 1 and len(calls) >= threads
        session = onnx_session(self.backbone, self.size, self.stages, per_call, 1 if parallel else threads)
        run = lambda call: session.run(None, {"images": call})[0]  # noqa: E731
        if parallel:
            with ThreadPoolExecutor(threads) as pool:  # ONNX Runtime lets go of the GIL while it runs
                return torch.from_numpy(np.concatenate(list(pool.map(run, calls))))
        return torch.from_numpy(np.concatenate([run(call) for call in calls]))

    def _bf16(self, _net, x: torch.Tensor, per_call: int) -> torch.Tensor:
        device = str(x.device)
        module = bf16_module(self.backbone, self.size, self.stages, per_call, device)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, dtype=torch.bfloat16):
            return torch.cat([module(x[j:j + per_call]).float() for j in range(0, len(x), per_call)])

    def _eager(self, net, x: torch.Tensor, per_call: int) -> torch.Tensor:
        pooled = _Pooled(net, self.stages)
        return torch.cat([pooled(x[j:j + per_call]) for j in range(0, len(x), per_call)])

    @staticmethod
    def _flip_averaged(head):
        """`head` run once on the chunk and its horizontal mirrors together (a whole number of calls
        still, and more calls for ONNX Runtime's threads), the two features averaged."""
        def flipped(net, x: torch.Tensor, per_call: int) -> torch.Tensor:
            f = head(net, torch.cat([x, x.flip(-1)]), per_call).float()
            return (f[:len(x)] + f[len(x):]) / 2
        return flipped

    def normalise_stages(self, features: np.ndarray) -> np.ndarray:
        """Each stage's slice of (N, dim) features scaled to unit L2 norm, in place."""
        start = 0
        for width in self.stage_dims:
            part = features[:, start:start + width]
            part /= np.maximum(np.linalg.norm(part, axis=1, keepdims=True), STAGE_NORM_EPS)
            start += width
        return features

    def __call__(self, images, progress: bool | None = None) -> np.ndarray:
        """(N, C, H, W) uint8 or float in [-1, 1], array or tensor -> (N, dim) float32.
        `progress`: a bar over batches (None = the extractor's setting)."""
        engine = self.resolved_engine
        head = {"onnxruntime": self._frozen, "torch-bf16": self._bf16}.get(engine, self._eager)
        if self.tta == "flip":
            head = self._flip_averaged(head)
        features = self._run(images, head, progress)
        return self.normalise_stages(features) if self.stage_norm else features

    def graph(self, shape: tuple[int, int, int]) -> FeatureGraph:
        """This extractor for float images of `shape` (C, H, W) as one fp32 module (ONNX export)."""
        return FeatureGraph(self, shape)

    def input_graph(self, shape: tuple[int, int, int]) -> InputGraph:
        """`prepare` for float images of `shape` (C, H, W) as one module (ONNX export)."""
        return InputGraph(self, shape)

    def logits(self, images, progress: bool | None = None) -> np.ndarray:
        """ImageNet class logits (N, 1000), with the same preprocessing; for sanity checks."""
        return self._run(images, lambda net, x, per_call: torch.cat(
            [net(x[j:j + per_call]) for j in range(0, len(x), per_call)]), progress)

    def __repr__(self) -> str:
        return (f"FeatureExtractor({self.backbone!r}, size={self.size}, input_scaling={self.input_scaling!r}, "
                f"stages={stages_label(self.stages)!r}, engine={self.engine!r}, precision={self.precision!r}, "
                f"tta={self.tta!r}, stage_norm={self.stage_norm!r})")
