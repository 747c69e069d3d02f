"""noveltykit export and set-threshold: ONNX files of saved detectors (apply.export)."""
from __future__ import annotations


def add_parser(sub) -> None:
    exp = sub.add_parser("export", help="export a saved generator-based detector to ONNX")
    exp.add_argument("model", help="a saved detector folder (config.json + weights.safetensors)")
    exp.add_argument("--out", required=True, help="the .onnx file to write")
    exp.set_defaults(func=run_export)

    thr = sub.add_parser("set-threshold", help="change the threshold stored in an exported ONNX file")
    thr.add_argument("onnx")
    thr.add_argument("threshold", type=float)
    thr.set_defaults(func=run_set_threshold)


def run_export(args) -> int:
    from ..apply.export import export_onnx, read_metadata
    from ..detectors import load
    path = export_onnx(load(args.model), args.out)
    meta = read_metadata(path)
    print(f"{path}: {meta['detector']} scores images {meta['input']}; threshold {meta['threshold']}")
    return 0


def run_set_threshold(args) -> int:
    from ..apply.export import read_metadata, set_threshold
    before = read_metadata(args.onnx).get("threshold")
    set_threshold(args.onnx, args.threshold)
    print(f"{args.onnx}: threshold {before} -> {read_metadata(args.onnx)['threshold']}")
    return 0
