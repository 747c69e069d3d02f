"""noveltykit bench: a one-class benchmark (experiments.bench.run_benchmark)."""
from __future__ import annotations

import shlex

from .arg_types import csv_list, int_list
from .help_text import DATASET_HELP


def add_parser(sub) -> None:
    bench = sub.add_parser(
        "bench", help="run a one-class benchmark and write results, tables and plots",
        description="Fit each --method on one normal class at a time (one-vs-rest: that class is normal, the "
                    "others novel; leave-one-out: that class is novel, the others normal) for each seed, score "
                    "the test images and write OUT/results.json, OUT/table.md (AUROC per class, the published "
                    "values apart below it), OUT/report.md and a plot per cell. Thresholds come from a "
                    "normal-only validation split; test labels are read for the metrics only. Each cell is "
                    "saved when done, so rerunning the same command resumes.",
        epilog="example:\n"
               "  noveltykit bench --dataset mnist --method knn pca --classes all --seeds 0,1,2 --out runs/x\n"
               "  noveltykit bench --dataset cifar10 --method knn:k=10 ede-gan --classes 0,3 --device cuda "
               "--out runs/y\n"
               "  noveltykit detectors      # the method names and their parameters")
    bench.add_argument("--dataset", required=True, metavar="NAME", help=DATASET_HELP)
    bench.add_argument("--method", action="extend", nargs="+", required=True,
                       help="detector name, optionally with parameters: knn:k=10,aggregate=sum")
    bench.add_argument("--protocol", default="one-vs-rest", choices=["one-vs-rest", "leave-one-out"])
    bench.add_argument("--classes", default="all",
                       help="'all' (every class the protocol can train for) or comma-separated indices/names")
    bench.add_argument("--seeds", type=int_list, default=[0], help="comma-separated, e.g. 0,1,2")
    bench.add_argument("--image-size", type=int, default=32,
                       help="load images at this side (default 32, the papers'); e.g. 128 for a folder of "
                            "large images and the feat-* detectors at size=128")
    bench.add_argument("--val-fraction", type=float, default=0.1,
                       help="normal-only validation split carved from training images")
    bench.add_argument("--out", required=True, help="output folder; rerunning resumes")
    bench.add_argument("--data-dir", help="a folder holding the dataset's files (else NOVELTYKIT_DATA, else the cache)")
    bench.add_argument("--no-plots", action="store_true", help="write no plot (results and tables only)")
    bench.add_argument("--save-models", action="store_true",
                       help="save each cell's fitted detector under OUT/models/ (e.g. teachers to distil)")
    bench.add_argument("--curves", action="store_true",
                       help="trained detectors: record test AUROC after each epoch (a diagnostic, never used to choose)")
    bench.add_argument("--device", help="where trained detectors run: cpu (their default) or cuda[:N]; "
                                        "not part of the method labels")
    bench.add_argument("--executor", default="serial", choices=["serial", "ray"],
                       help="serial: cells one after another in this process (needs nothing); ray: each cell a "
                            "Ray task on a local Ray (loopback, no dashboard) or the cluster at --address "
                            "(optional extra: pip install 'noveltykit[ray]')")
    bench.add_argument("--address", help="ray: the cluster to join (default: RAY_ADDRESS, else a local Ray)")
    bench.add_argument("--cpus-per-cell", type=int, default=1, help="ray: CPUs a cell reserves; its torch threads")
    bench.add_argument("--gpus-per-cell", type=float, default=0.0, help="ray: GPUs a cell reserves (0.5 = half)")
    bench.add_argument("--retries", type=int, default=2,
                       help="ray: runs of a cell whose worker died before it is filed as failed")
    bench.add_argument("--tensorboard", metavar="DIR",
                       help="also write each cell's training curves and metrics as TensorBoard event files "
                            "under DIR (optional extra: pip install 'noveltykit[tensorboard]'); results.json "
                            "stays the record")
    bench.add_argument("--fit-cache", metavar="DIR",
                       help="keep every cell's fitted model in DIR by what it was fitted on; a cell whose fit was "
                            "made there before on the same images (another run, a sweep's trial of the same "
                            "class and seed) is loaded, not refitted, and its record says so")
    bench.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                       help="import MODULE first (here and in every worker): detectors of your own that it registers")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(func=run)


def run(args) -> int:
    from ..experiments.bench import BenchConfig, run_benchmark
    from ..experiments.executors import ExecutorConfig
    classes = "all" if args.classes == "all" else csv_list(args.classes)
    executor = ExecutorConfig(args.executor, args.address, args.cpus_per_cell, args.gpus_per_cell, args.retries)
    cfg = BenchConfig(dataset=args.dataset, methods=args.method, protocol=args.protocol,
                      classes=classes, seeds=args.seeds, val_fraction=args.val_fraction, image_size=args.image_size,
                      out=args.out, data_dir=args.data_dir, plots=not args.no_plots, curves=args.curves,
                      save_models=args.save_models, device=args.device, executor=executor,
                      tensorboard=args.tensorboard, fit_cache=args.fit_cache, imports=tuple(args.imports), command=shlex.join(["noveltykit", *args.argv]))
    run_benchmark(cfg, progress=not args.quiet)
    print(f"report: {args.out}/report.md  table: {args.out}/table.md  results: {args.out}/results.json")
    return 0
