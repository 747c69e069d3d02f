"""noveltykit export and set-threshold: ONNX files of saved detectors (apply.export)."""
from __future__ import annotations


def add_parser(sub) -> None:
    exp = sub.add_parser("export", help="export a saved detector's scoring graph to ONNX",
                         description="Write a saved detector's score as one ONNX graph (images as it was fitted "
                                     "on them, float32 in [-1, 1] -> scores), its threshold and input layout as "
                                     "metadata: onnxruntime then scores images without noveltykit or torch, "
                                     "within 1e-4 of the detector's own scores. A network and its error, a kNN "
                                     "memory as a constant, a pretrained backbone with its head: one graph. A "
                                     "detector or setting that cannot be exported says so and lists those that "
                                     "can. Needs the export extra: pip install 'noveltykit[export]'.",
                         epilog="example:\n  noveltykit fit --method feat-knn --train good/ --out models/mine\n"
                                "  noveltykit export models/mine --out mine.onnx\n"
                                "  noveltykit export runs/s/models/*/class3_seed0 --out student.onnx   # a distilled student")
    exp.add_argument("model", help="a saved detector folder (config.json + weights.safetensors)")
    exp.add_argument("--out", required=True, help="the .onnx file to write")
    exp.set_defaults(func=run_export)

    thr = sub.add_parser("set-threshold", help="change the threshold stored in an exported ONNX file",
                         description="Replace the threshold a saved model folder or an exported ONNX file "
                                     "decides with (score > threshold: novel); the scores themselves do not "
                                     "change. A model folder takes a score or a quantile of its normal "
                                     "validation scores (qQ); an ONNX file holds no validation scores and takes "
                                     "a score. Prints the threshold before and after.",
                         epilog="example:\n  noveltykit set-threshold models/knn q0.99   # about 1% of normal "
                                "images flagged\n"
                                "  noveltykit set-threshold student.onnx 15")
    thr.add_argument("onnx", metavar="MODEL", help="a saved model folder (fit, bench --save-models) or an "
                                                   "exported .onnx file")
    thr.add_argument("threshold", help="a score (e.g. 15), or for a model folder a quantile of its normal "
                                       "validation scores (e.g. q0.99: about 1%% of normal images flagged)")
    thr.set_defaults(func=run_set_threshold)


def run_export(args) -> int:
    from ..apply.export import export_onnx, read_metadata
    from ..detectors import load
    path = export_onnx(load(args.model), args.out)
    meta = read_metadata(path)
    print(f"{path}: {meta['detector']} scores images {meta['input']}; threshold {meta['threshold']}")
    return 0


def run_set_threshold(args) -> int:
    from ..apply.threshold import set_threshold_of
    before, after = set_threshold_of(args.onnx, args.threshold)
    print(f"{args.onnx}: threshold {before} -> {after}")
    return 0
