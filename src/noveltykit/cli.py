"""Command line: parse, call the API, print. No logic of its own."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path


# Exit statuses (documented in the README and `noveltykit --help`): a script can tell them apart.
EXIT_OK, EXIT_CELLS_FAILED, EXIT_USAGE, EXIT_DATA, EXIT_DIVERGED, EXIT_MODEL, EXIT_PACKAGE = range(7)
EXIT_HELP = """exit status:
  0  done
  1  bench/distill: cells failed in different ways (each error is listed; the other cells are
     saved); when every failed cell failed the same known way, that way's status below
  2  bad arguments or input (a parameter, a path, an image)
  3  a dataset could not be found or fetched
  4  training diverged (NaN or inf loss; the message names the last good checkpoint)
  5  a saved model or exported file that cannot be loaded
  6  an optional package or the pretrained weights are not installed
--debug shows the traceback of any of these."""


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _int_list(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def cmd_data(args) -> int:
    from .data import dataset_info, fetch_dataset
    fn = fetch_dataset if args.action == "fetch" else dataset_info
    print(json.dumps(fn(args.dataset, args.data_dir), indent=2, default=str))
    return 0


def cmd_bench(args) -> int:
    from .eval.bench import BenchConfig, run_benchmark
    from .eval.executors import ExecutorConfig
    classes = "all" if args.classes == "all" else _csv(args.classes)
    executor = ExecutorConfig(args.executor, args.address, args.cpus_per_cell, args.gpus_per_cell, args.retries)
    cfg = BenchConfig(dataset=args.dataset, methods=args.method, protocol=args.protocol,
                      classes=classes, seeds=args.seeds, val_fraction=args.val_fraction, image_size=args.image_size,
                      out=args.out, data_dir=args.data_dir, plots=not args.no_plots, curves=args.curves,
                      save_models=args.save_models, device=args.device, executor=executor,
                      tensorboard=args.tensorboard, imports=tuple(args.imports), command=shlex.join(["noveltykit", *args.argv]))
    run_benchmark(cfg, progress=not args.quiet)
    print(f"report: {args.out}/report.md  table: {args.out}/table.md  results: {args.out}/results.json")
    return 0


def _grid(text: str) -> tuple[str, list[str]]:
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not _csv(values):
        raise argparse.ArgumentTypeError(f"expected key=v1,v2,..., got {text!r}")
    return key.strip(), _csv(values)


def cmd_sweep(args) -> int:
    from .eval.sweep import SweepConfig, run_sweep
    keys = [k for k, _ in args.grid]
    if len(set(keys)) != len(keys):
        raise ValueError(f"--grid names a parameter twice: {keys}")
    if not args.grid and not args.variant:
        raise ValueError("give --grid KEY=V1,V2 or --variant SPEC (whole specs to compare with --method)")
    cfg = SweepConfig(dataset=args.dataset, method=args.method, grid=dict(args.grid), variants=args.variant,
                      device=args.device, classes=args.classes,
                      out=args.out, seed=args.seed, rule=args.rule, image_size=args.image_size,
                      data_dir=args.data_dir, n_novel=args.n_novel, executor=args.executor,
                      address=args.address, cpus_per_trial=args.cpus_per_trial, curves=args.curves,
                      reuse=args.reuse)
    result = run_sweep(cfg, progress=not args.quiet)
    chosen = result["points"][result["chosen"]["index"]]
    print(f"chosen by {args.rule} on the dev split: {chosen['label']} (mean dev AUROC {chosen['mean']:.4f})")
    print(f"table: {args.out}/sweep.md  plot: {args.out}/sweep.png  record: {args.out}/sweep.json")
    return 0


def cmd_distill(args) -> int:
    from .distill import PLAN_NAMES, parse_structure
    from .eval.bench import BenchConfig, run_benchmark
    from .eval.methods import MethodSpec
    structure = parse_structure(args.structure)
    params = {"structure": structure, "width": args.width, "preset": args.preset, "budget": args.budget}
    if args.epochs is not None:
        params["epochs"] = args.epochs
    alias = "kdgan:" + ",".join(f"{k}={v}" for k, v in params.items())
    if args.teacher:
        from .detectors.registry import read_config
        read_config(Path(args.teacher))  # a bad folder fails here, before any work
        params["teacher_dir"] = str(Path(args.teacher).resolve())
    spec = MethodSpec("kdgan", tuple(params.items()), alias=alias)
    cfg = BenchConfig(dataset=args.dataset, methods=[spec], protocol=args.protocol, classes=[args.cls],
                      seeds=[args.seed], val_fraction=args.val_fraction, out=args.out,
                      data_dir=args.data_dir, curves=args.curves, save_models=True, device=args.device,
                      command=shlex.join(["noveltykit", *args.argv]))
    for r in run_benchmark(cfg, progress=not args.quiet):
        if r["method"] == alias and r["seed"] == args.seed:
            print(f"class {r['class_name']}: {PLAN_NAMES[structure]} u={args.width} student AUROC "
                  f"{r['auroc']:.4f}, teacher AUROC {r.get('teacher_auroc', float('nan')):.4f}; "
                  f"student saved in {Path(args.out) / r['model']}")
    return 0


def cmd_export(args) -> int:
    from .detectors import load
    from .export import export_onnx, read_metadata
    path = export_onnx(load(args.model), args.out)
    meta = read_metadata(path)
    print(f"{path}: {meta['detector']} scores images {meta['input']}; threshold {meta['threshold']}")
    return 0


def cmd_set_threshold(args) -> int:
    from .export import read_metadata, set_threshold
    before = read_metadata(args.onnx).get("threshold")
    set_threshold(args.onnx, args.threshold)
    print(f"{args.onnx}: threshold {before} -> {read_metadata(args.onnx)['threshold']}")
    return 0


def cmd_report(args) -> int:
    from .eval.bench import load_results
    from .eval.report import metric_table, timing_table, write_report
    results, source = [], {}
    for run in args.run:
        found = load_results(Path(run) / "results.json")
        if not found:
            raise ValueError(f"{run}: no results.json with results")
        if len(args.run) == 1 and args.seeds is None and args.classes is None:
            write_report(run, found)  # a single folder's own report is rebuilt too
        results += found
        source.update({id(r): run for r in found})
    if args.seeds is not None:
        results = [r for r in results if r["seed"] in args.seeds]
    if args.classes is not None:
        results = [r for r in results if r["class"] in args.classes]
    if args.methods is not None:  # these columns, in this order
        missing = set(args.methods) - {r["method"] for r in results}
        if missing:
            raise ValueError(f"no results for method(s) {sorted(missing)} in these folders")
        results = sorted((r for r in results if r["method"] in args.methods),
                         key=lambda r: args.methods.index(r["method"]))
    if len({(r["dataset"], r["protocol"]) for r in results}) > 1:
        raise ValueError("these folders hold different datasets or protocols; report them one by one")
    first = {}
    for r in results:  # one cell in two folders would pass for two seeds in the mean +- std
        if (key := (r["method"], r["class"], r["seed"])) in first:
            raise ValueError(f"{first[key]} and {source[id(r)]} both hold {r['method']} class {r['class']} "
                             f"seed {r['seed']}; report them apart, or narrow with --methods/--classes/--seeds")
        first[key] = source[id(r)]
    print(metric_table(results, args.metric, with_paper=not args.no_paper))
    if args.times:
        print("\n" + timing_table(results))
    return 0


def cmd_probe(args) -> int:
    from .eval.probe import run_probe
    kwargs = {} if args.eps is None else {"eps": args.eps}
    record = run_probe(args.model, args.attack, args.dataset, args.cls, args.out, n=args.n,
                       protocol=args.protocol, seed=args.seed, data_root=args.data_dir, target=args.target,
                       overshoot=args.overshoot, max_iter=args.max_iter, **kwargs)
    rho = "n/a" if record["rho_adv"] is None else f"{record['rho_adv']:.4g}"
    rel = "n/a" if record["rho_adv_normalised"] is None else f"{record['rho_adv_normalised']:.4g}"
    print(f"{args.attack} on {record['detector']}: {record['n_flipped']}/{record['n']} decisions flipped; "
          f"rho_adv {rho} (normalised {rel}); wrote {args.out}/probe.json, probe.md, probe.png")
    return 0


def cmd_linear_gan(args) -> int:
    from dataclasses import asdict

    from .eval.plots import plot_linear_gan
    from .fileio import atomic_write_json
    from .train.linear_gan import LinearGANConfig, d_g_convergence, gaussian_data, train_linear_gan
    cfg = LinearGANConfig(m=args.m, c=args.c, steps=args.steps, lr_d=args.lr_d, lr_g=args.lr_g, k=args.k,
                          seed=args.seed)
    eigenvalues = tuple(float(v) for v in _csv(args.eigenvalues))
    result = train_linear_gan(gaussian_data(args.m, args.n, eigenvalues, args.seed), cfg)
    record = {"config": asdict(cfg), "data": {"n": args.n, "eigenvalues": eigenvalues, "seed": args.seed},
              "convergence": d_g_convergence(result), "angles_degrees": result.angles,
              "final": {k: v[-1] for k, v in result.history.items()}, "history": result.history,
              "command": shlex.join(["noveltykit", *args.argv])}
    out = Path(args.out)
    plot_linear_gan(out / "linear-gan.png", result.history, f"linear GAN m={cfg.m} c={cfg.c} seed {cfg.seed}")
    atomic_write_json(out / "linear-gan.json", record)
    conv = record["convergence"]
    print(f"mean D(theta g) over the last 10% of steps: {conv['mean_D_g_tail']:.4f} "
          f"({'converged to' if conv['converged'] else 'not within'} {conv['tol']} of 1/2); "
          f"wrote {out}/linear-gan.json, linear-gan.png")
    return 0


def cmd_fit(args) -> int:
    from .apply.fit import fit_folder
    det = fit_folder(args.method, args.train, args.out, image_size=args.image_size, val_dir=args.val,
                     seed=args.seed, device=args.device, progress=not args.quiet)
    t = det.training_
    print(f"{det.name}: trained on {t['n_train']} images, threshold {det.threshold_:.6g} "
          f"({det.threshold_quantile:g} quantile of {t['n_validation']} normal validation images); "
          f"wrote {args.out} (model card: {args.out}/README.md)\n"
          f"next: noveltykit score {args.out} NEW_IMAGES/ --out scores.csv --report report/")
    return 0


def cmd_score(args) -> int:
    from .apply.score import rows_as_csv, score_paths
    rows = score_paths(args.model, args.paths, out=args.out, threshold=args.threshold, report=args.report,
                       progress=not args.quiet, memory=args.memory)
    scored = [r for r in rows if r.score is not None]
    if args.out is None:  # the rows themselves, as CSV on standard output
        sys.stdout.write(rows_as_csv(rows))
    where = "".join(f"; wrote {p}" for p in (args.out, args.report and f"{args.report}/index.html") if p)
    print(f"{len(scored)} scored, {sum(r.is_novel for r in scored)} novel, {len(rows) - len(scored)} unreadable"
          f"{where}", file=sys.stderr)
    return 0


def cmd_serve(args) -> int:
    # without the serve extra this is an ImportError whose message says what to install
    from .apply.serve import serve
    pixels = {} if args.max_pixels is None else {"max_pixels": args.max_pixels}
    serve(args.model, host=args.host, port=args.port, memory_dir=args.memory,
          max_request_bytes=args.max_request_bytes, max_images=args.max_images, **pixels)
    return 0


def cmd_detectors(args) -> int:
    from .detectors import available, make
    for name in available():
        print(f"{name}: {make(name).get_params()}")
    return 0


def cmd_profile(args) -> int:
    from .nets.profile import profile_gan
    rows = profile_gan(args.method, args.width, args.channels)
    print(f"{args.method} u={args.width} channels={args.channels} (32x32 input; MACs = FLOPs / 2)")
    teacher = profile_gan(args.method, 64, args.channels) if args.width != 64 else rows
    for (name, params, macs), (_, t_params, t_macs) in zip(rows, teacher):
        ratio = f"  (teacher u=64 / this: {t_params / params:.2f}x params, {t_macs / macs:.2f}x MACs)" \
            if args.width != 64 else ""
        print(f"  {name:<14} {params / 1e6:8.4f}M params  {macs / 1e6:9.3f}M MACs{ratio}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noveltykit", description="One-class novelty detection on images",
                                     epilog=EXIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show the traceback of a known failure too")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="fetch datasets into the cache, or show what is cached")
    data.add_argument("action", choices=["fetch", "info"])
    data.add_argument("--dataset", required=True,
                      help="mnist | fashion-mnist | cifar10 | cifar10-jpeg | folder:PATH")
    data.add_argument("--data-dir", help="a folder holding the dataset's files (else NOVELTYKIT_DATA)")
    data.set_defaults(func=cmd_data)

    bench = sub.add_parser("bench", help="run a one-class benchmark and write results, tables and plots")
    bench.add_argument("--dataset", required=True)
    bench.add_argument("--method", action="extend", nargs="+", required=True,
                       help="detector name, optionally with parameters: knn:k=10,aggregate=sum")
    bench.add_argument("--protocol", default="one-vs-rest", choices=["one-vs-rest", "leave-one-out"])
    bench.add_argument("--classes", default="all", help="'all' or comma-separated indices/names")
    bench.add_argument("--seeds", type=_int_list, default=[0], help="comma-separated, e.g. 0,1,2")
    bench.add_argument("--image-size", type=int, default=32,
                       help="load images at this side (default 32, the papers'); e.g. 128 for a folder of "
                            "large images and the feat-* detectors at size=128")
    bench.add_argument("--val-fraction", type=float, default=0.1,
                       help="normal-only validation split carved from training images")
    bench.add_argument("--out", required=True, help="output folder; rerunning resumes")
    bench.add_argument("--data-dir")
    bench.add_argument("--no-plots", action="store_true")
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
    bench.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                       help="import MODULE first (here and in every worker): detectors of your own that it registers")
    bench.add_argument("--quiet", action="store_true", help="no progress bar")
    bench.set_defaults(func=cmd_bench)

    swp = sub.add_parser(
        "sweep", help="choose hyper-parameters on a training-only development split (no test image is read)",
        description="Run every point of a grid on the development split of each listed class: the normal "
                    "class's validation images against other classes' TRAINING images (no test image is "
                    "loaded), then choose by a rule fixed on this command line. Rerunning resumes; "
                    "processes on one --out share its trials (each trial is claimed by a lock).",
        epilog="example:\n  noveltykit sweep --dataset mnist --method deep-svdd --grid lr=0.001,0.0001 "
               "--classes 2,3,8 --rule mean-dev-auroc --out runs/sweep-dsvdd",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    swp.add_argument("--dataset", required=True)
    swp.add_argument("--method", required=True, help="the detector spec the grid changes, e.g. deep-svdd:epochs=30")
    swp.add_argument("--grid", type=_grid, action="append", default=[], metavar="KEY=V1,V2",
                     help="a parameter and its values; repeat for more (their product is the grid)")
    swp.add_argument("--variant", action="append", default=[], metavar="SPEC",
                     help="instead of a grid: a whole spec to compare with --method (the incumbent: a tie "
                          "keeps it); repeat for more")
    swp.add_argument("--device", help="cpu or cuda[:N], for trained detectors; not part of the labels")
    swp.add_argument("--classes", type=_int_list, required=True, help="the normal classes to judge on, e.g. 2,3,8")
    swp.add_argument("--rule", default="mean-dev-auroc",  # checked by SweepConfig (no torch import for --help)
                     help="how the choice is made: mean-dev-auroc (highest mean over the classes), "
                          "worst-class-dev-auroc (highest minimum); ties go to the first grid point")
    swp.add_argument("--seed", type=int, default=0, help="draws the validation split and the initialisation")
    swp.add_argument("--image-size", type=int, default=32)
    swp.add_argument("--n-novel", type=int, default=2000, help="other classes' training images per dev split")
    swp.add_argument("--out", required=True, help="output folder; rerunning resumes")
    swp.add_argument("--data-dir")
    swp.add_argument("--executor", default="serial", choices=["serial", "ray"],
                     help="ray: a Ray Tune experiment, one trial per grid point (pip install 'noveltykit[ray]')")
    swp.add_argument("--address", help="ray: the cluster to join (default: RAY_ADDRESS, else a local Ray)")
    swp.add_argument("--cpus-per-trial", type=int, default=1)
    swp.add_argument("--curves", action="store_true",
                     help="also record each trained trial's dev AUROC after every epoch (a diagnostic the rule "
                          "never reads; one more scoring pass of the dev split an epoch)")
    swp.add_argument("--reuse", action="append", default=[], metavar="OUT",
                     help="another sweep's --out: its finished trials of the same (spec, class, seed, data) "
                          "are copied in, not refitted (e.g. a second round's incumbent); repeat for more")
    swp.add_argument("--quiet", action="store_true")
    swp.set_defaults(func=cmd_sweep)

    rep = sub.add_parser("report", help="print the table of one or more bench folders (one folder: "
                                        "also rebuild its table.md and report.md)")
    rep.add_argument("run", nargs="+", help="folders written by `noveltykit bench` (same dataset and protocol)")
    rep.add_argument("--seeds", type=_int_list, help="only these seeds, e.g. 0")
    rep.add_argument("--classes", type=_int_list, help="only these class indices, e.g. 2,3,8")
    rep.add_argument("--methods", nargs="+", help="only these method labels, as columns in this order")
    rep.add_argument("--no-paper", action="store_true", help="leave out the published (paper) columns")
    rep.add_argument("--metric", default="auroc", choices=["auroc", "aupr", "fpr95", "prec_at_n", "auroc_val"],
                     help="auroc_val: AUROC of the epoch with the lowest normal-validation loss "
                          "(what select=val gives; needs bench --curves)")
    rep.add_argument("--times", action="store_true", help="also the fit, score and epoch seconds of each method")
    rep.set_defaults(func=cmd_report)

    prof = sub.add_parser("profile", help="parameters and multiply-accumulates of a GAN detector's networks")
    prof.add_argument("--method", default="ede-gan", choices=["ede-gan", "edhat-gan", "ed-gan"])
    prof.add_argument("--width", type=int, default=64, help="u: 64 for the teacher")
    prof.add_argument("--channels", type=int, default=3, choices=[1, 3])
    prof.set_defaults(func=cmd_profile)

    dist = sub.add_parser("distill", help="distil an EDE-GAN teacher into a small student (P-KDGAN) on one "
                                          "class, evaluate both, save the student")
    dist.add_argument("--teacher", help="a saved ede-gan detector (bench --save-models); "
                                        "default: train one here, kept under OUT/teachers")
    dist.add_argument("--dataset", required=True)
    dist.add_argument("--class", dest="cls", required=True, help="the normal class (index or name)")
    dist.add_argument("--seed", type=int, default=0)
    dist.add_argument("--protocol", default="one-vs-rest", choices=["one-vs-rest", "leave-one-out"])
    dist.add_argument("--val-fraction", type=float, default=0.1)
    dist.add_argument("--width", type=int, default=2, help="the student's u (paper: 8 CIFAR-10, 2 MNIST, 1 FMNIST)")
    dist.add_argument("--structure", default="p23",
                      help="1-4 (KDGAN-n), p23 or p24 (P-KDGAN-II: KDGAN-2, then KDGAN-3 or -4)")
    dist.add_argument("--preset", default="student", help="the student's hyper-parameters (the teacher's: default)")
    dist.add_argument("--budget", default="cpu", help="quick | cpu | full (per distillation step)")
    dist.add_argument("--epochs", type=int, help="override the budget's epochs per step")
    dist.add_argument("--device", help="cpu (default) or cuda[:N], for the student and a teacher trained here")
    dist.add_argument("--out", required=True, help="output folder; rerunning resumes")
    dist.add_argument("--data-dir")
    dist.add_argument("--curves", action="store_true", help="diagnostic test AUROC per epoch")
    dist.add_argument("--quiet", action="store_true")
    dist.set_defaults(func=cmd_distill)

    exp = sub.add_parser("export", help="export a saved generator-based detector to ONNX")
    exp.add_argument("model", help="a saved detector folder (config.json + weights.safetensors)")
    exp.add_argument("--out", required=True, help="the .onnx file to write")
    exp.set_defaults(func=cmd_export)

    thr = sub.add_parser("set-threshold", help="change the threshold stored in an exported ONNX file")
    thr.add_argument("onnx")
    thr.add_argument("threshold", type=float)
    thr.set_defaults(func=cmd_set_threshold)

    probe = sub.add_parser(
        "probe", help="adversarial probe: how small a change of a test image flips a saved detector's decision",
        description="Attack test images of one class's split with a saved torch detector and write "
                    "probe.json, probe.md and probe.png (tech report 5.1). fgsm: one fast-gradient-sign step "
                    "of max-norm --eps towards the other side of the threshold (normal images pushed to look "
                    "novel, novel ones to look normal). deepfool: repeated steps to the nearest boundary of "
                    "the linearised decision until it flips, so its L2 norm estimates the smallest change "
                    "that flips it (rho_adv is their mean over the flipped images). Perturbed images are "
                    "clipped to the valid range; norms are in the images' [-1, 1] scale.")
    probe.add_argument("--model", required=True, help="a saved detector folder (bench --save-models)")
    probe.add_argument("--attack", required=True, choices=["fgsm", "deepfool"],
                       help="fgsm: one signed-gradient step of size --eps; deepfool: iterate to the nearest "
                            "boundary (an estimate of the smallest L2 change that flips)")
    probe.add_argument("--dataset", required=True)
    probe.add_argument("--class", dest="cls", required=True, help="the cell's class (index or name)")
    probe.add_argument("--out", required=True, help="folder for probe.json, probe.md and probe.png")
    probe.add_argument("--eps", type=float, help="fgsm: max-norm of the step, [-1, 1] scale (default 16/255, "
                                                 "8 grey levels)")
    probe.add_argument("--n", type=int, default=16, help="test images to attack, half normal and half novel")
    probe.add_argument("--target", default="decision", choices=["decision", "class"],
                       help="decision: cross the novelty threshold; class: change the predicted class "
                            "(certainty only)")
    probe.add_argument("--overshoot", type=float, default=0.02, help="deepfool: step past the boundary by this")
    probe.add_argument("--max-iter", type=int, default=50, help="deepfool: give up on an image after this many steps")
    probe.add_argument("--seed", type=int, default=0, help="the split's seed and the choice of images")
    probe.add_argument("--protocol", default="one-vs-rest", choices=["one-vs-rest", "leave-one-out"])
    probe.add_argument("--data-dir")
    probe.set_defaults(func=cmd_probe)

    lin = sub.add_parser("linear-gan", help="the tech report's linear GAN (A.5) on Gaussian data: does D reach 1/2?",
                         description="Train G(z) = Bz against D(y) = sigmoid(Ay) with hand-derived gradients "
                                     "on zero-mean Gaussian data; write the run (linear-gan.json) and its curves "
                                     "(linear-gan.png): D on data and generated points, the fixed-point "
                                     "residuals, the angles to the principal components.")
    lin.add_argument("--m", type=int, default=8, help="data dimensions")
    lin.add_argument("--c", type=int, default=2, help="noise dimensions (<= m)")
    lin.add_argument("--n", type=int, default=2000, help="data points")
    lin.add_argument("--eigenvalues", default="4,2,1,0.8,0.6,0.5", help="the data's covariance eigenvalues "
                                                                       "(the last repeats up to m)")
    lin.add_argument("--steps", type=int, default=1000)
    lin.add_argument("--lr-d", type=float, default=0.5)
    lin.add_argument("--lr-g", type=float, default=0.5)
    lin.add_argument("--k", type=int, default=1, help="discriminator steps per generator step")
    lin.add_argument("--seed", type=int, default=0)
    lin.add_argument("--out", required=True, help="folder for linear-gan.json and linear-gan.png")
    lin.set_defaults(func=cmd_linear_gan)

    fit = sub.add_parser("fit", help="train a detector on a folder of your normal images and save it",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Every image under --train is a normal training image (subfolders allowed; "
                                     "when every image sits in a direct subfolder and there are two or more, their "
                                     "names are class labels, which `certainty` uses). The threshold is the "
                                     "detector's threshold_quantile of the scores of normal validation images: "
                                     "--val, or a seeded share of --train. No test folder is needed.",
                         epilog="example:\n  noveltykit fit --method knn --train photos/normal --out models/knn\n"
                                "  noveltykit fit --method feat-knn:size=128 --train parts/ --image-size 128 "
                                "--out models/parts")
    fit.add_argument("--method", required=True, help="a detector spec, e.g. knn or conv-ae:epochs=20")
    fit.add_argument("--train", required=True, help="folder of normal images")
    fit.add_argument("--out", required=True, help="the model folder to write (new, or holding only a saved model)")
    fit.add_argument("--image-size", type=int, help="images are resized to this side (default: the size the "
                                                    "detector reads at, e.g. feat-knn's size; else 32)")
    fit.add_argument("--val", help="folder of normal validation images for the threshold (default: held out)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--device", help="cpu (default) or cuda[:N]")
    fit.add_argument("--quiet", action="store_true")
    fit.set_defaults(func=cmd_fit)

    score = sub.add_parser("score", help="score image files and folders with a saved model",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="One row per file: path, score (higher = more novel), threshold, is_novel, "
                                       "error. Folders are read recursively. A file that cannot be read is a row "
                                       "with its error, and the rest are still scored. Without --out the rows "
                                       "go to standard output as CSV.",
                           epilog="example:\n  noveltykit score models/knn new/ extra.png --out scores.csv "
                                  "--report report/")
    score.add_argument("model", help="a saved model folder (fit, or bench --save-models)")
    score.add_argument("paths", nargs="+", help="image files and folders")
    score.add_argument("--out", help="write the rows here: FILE.csv or FILE.jsonl")
    score.add_argument("--threshold", type=float, help="use this threshold instead of the model's")
    score.add_argument("--report", help="folder for an HTML page: score histogram, most novel and most normal images")
    score.add_argument("--memory", metavar="DIR",
                       help="a novelty memory folder (serve --memory): score with its confirmed novelties")
    score.add_argument("--quiet", action="store_true")
    score.set_defaults(func=cmd_score)

    from .apply.limits import DEFAULT_MAX_IMAGES, DEFAULT_MAX_REQUEST_BYTES
    srv = sub.add_parser("serve", help="score uploaded images over HTTP with a saved model (needs the serve extra)",
                         formatter_class=argparse.RawDescriptionHelpFormatter,
                         description="Load the model once and serve: GET / (a page to upload images and see "
                                     "their scores), GET /healthz, GET /v1/model (the model card), POST /v1/score "
                                     "(multipart field `files`, repeated; optional `threshold`): one entry per "
                                     "file with filename, score, threshold, is_novel and error, as `score` "
                                     "gives. With --memory, POST /v1/memory/confirm adds confirmed novelties "
                                     "and scoring uses them. A bad model folder fails here, before listening. "
                                     "Needs: pip install 'noveltykit[serve]'.",
                         epilog="example:\n  noveltykit serve models/knn --port 8000\n"
                                "  curl -F files=@new/a.png -F files=@new/b.png http://127.0.0.1:8000/v1/score")
    srv.add_argument("model", help="a saved model folder (fit, or bench --save-models)")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--memory", metavar="DIR", help="a novelty memory folder (made if new), kept across restarts")
    srv.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                     help=f"larger request bodies get 413 (default {DEFAULT_MAX_REQUEST_BYTES:,})")
    srv.add_argument("--max-images", type=int, default=DEFAULT_MAX_IMAGES,
                     help=f"more files in one request get 413 (default {DEFAULT_MAX_IMAGES})")
    srv.add_argument("--max-pixels", type=int,
                     help="a larger image is that file's error, not decoded (default: fit's and score's limit)")
    srv.set_defaults(func=cmd_serve)

    det = sub.add_parser("detectors", help="list detectors and their default parameters")
    det.set_defaults(func=cmd_detectors)
    return parser


def _exit_status(exc: BaseException) -> int | None:
    """The documented status of a known failure; None for a bug (shown with its traceback)."""
    from .data import DataUnavailableError
    from .detectors import ModelFileError
    from .eval.bench import BenchFailed
    from .features.weights import PretrainedWeightsMismatch
    from .train.stabilisers import TrainingDiverged

    if isinstance(exc, BenchFailed):  # every cell failed the same known way: that way's status
        kinds = {_exit_status(cause) for cause in exc.causes}
        return kinds.pop() if len(kinds) == 1 and None not in kinds else EXIT_CELLS_FAILED
    for kind, status in ((DataUnavailableError, EXIT_DATA),
                         (TrainingDiverged, EXIT_DIVERGED),
                         ((ModelFileError, PretrainedWeightsMismatch), EXIT_MODEL),
                         (ImportError, EXIT_PACKAGE), ((ValueError, FileNotFoundError), EXIT_USAGE)):
        if isinstance(exc, kind):
            return status
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv  # accepted anywhere on the line, not only before the command
    argv = [a for a in argv if a != "--debug"]
    args = build_parser().parse_args(argv)
    args.argv, args.debug = argv, debug  # argv is recorded with results, so each says how it was made
    try:
        return args.func(args)
    except Exception as exc:
        status = _exit_status(exc)
        if status is None or args.debug:
            raise
        # A known failure gets its message, not a traceback.
        print(f"noveltykit: error: {exc}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
