"""noveltykit distill: a P-KDGAN student of one class (`detectors.kdgan.student_spec`, run as a
one-cell benchmark by `experiments.one_cell.run_one_cell`)."""
from __future__ import annotations

import shlex
from pathlib import Path

from .help_text import DATASET_HELP


def add_parser(sub) -> None:
    dist = sub.add_parser("distill", help="distil an EDE-GAN teacher into a small student (P-KDGAN) on one "
                                          "class, evaluate both, save the student",
                          description="One one-vs-rest cell of the P-KDGAN student: train an EDE-GAN teacher on "
                                      "the normal class (or load --teacher), distil it into a student of width "
                                      "u = --width by --structure, report both AUROCs on the test split and "
                                      "save the student under OUT/models/. The record goes to OUT/results.json "
                                      "as a bench cell, so `noveltykit report OUT` tabulates it.",
                          epilog="example:\n  noveltykit distill --dataset mnist --class 3 --width 2 --out runs/s\n"
                                 "  noveltykit distill --teacher runs/t/models/*/class3_seed0 --dataset mnist "
                                 "--class 3 --structure 2 --out runs/s2")
    dist.add_argument("--teacher", help="a saved ede-gan detector (bench --save-models); "
                                        "default: train one here, kept under OUT/teachers")
    dist.add_argument("--dataset", required=True, metavar="NAME", help=DATASET_HELP)
    dist.add_argument("--class", dest="cls", required=True, help="the normal class (index or name)")
    dist.add_argument("--seed", type=int, default=0, help="the split's and the networks' seed")
    dist.add_argument("--protocol", default="one-vs-rest", choices=["one-vs-rest", "leave-one-out"])
    dist.add_argument("--val-fraction", type=float, default=0.1,
                      help="normal-only validation split carved from training images")
    dist.add_argument("--width", type=int, default=2, help="the student's u (paper: 8 CIFAR-10, 2 MNIST, 1 FMNIST)")
    dist.add_argument("--structure", default="p23",
                      help="1-4 (KDGAN-n), p23 or p24 (P-KDGAN-II: KDGAN-2, then KDGAN-3 or -4)")
    dist.add_argument("--preset", default="student",
                      help="the student's named set of hyper-parameters (the teacher's set is called 'default')")
    dist.add_argument("--budget", default="cpu", help="quick | cpu | full (per distillation step)")
    dist.add_argument("--epochs", type=int, help="override the budget's epochs per step")
    dist.add_argument("--device", help="cpu (default) or cuda[:N], for the student and a teacher trained here")
    dist.add_argument("--out", required=True, help="output folder; rerunning resumes")
    dist.add_argument("--data-dir", help="a folder holding the dataset's files (else NOVELTYKIT_DATA, else the cache)")
    dist.add_argument("--curves", action="store_true", help="diagnostic test AUROC per epoch")
    dist.add_argument("--quiet", action="store_true", help="no progress bar")
    dist.set_defaults(func=run)


def run(args) -> int:
    from ..detectors.kdgan import student_spec
    from ..experiments.one_cell import run_one_cell
    spec, plan = student_spec(args.structure, args.width, args.preset, args.budget, args.epochs, args.teacher)
    for r in run_one_cell(spec, args.dataset, args.cls, args.out, seed=args.seed, protocol=args.protocol,
                          val_fraction=args.val_fraction, device=args.device, data_dir=args.data_dir,
                          curves=args.curves, command=shlex.join(["noveltykit", *args.argv]),
                          progress=not args.quiet):
        print(f"class {r['class_name']}: {plan} u={args.width} student AUROC "
              f"{r['auroc']:.4f}, teacher AUROC {r.get('teacher_auroc', float('nan')):.4f}; "
              f"student saved in {Path(args.out) / r['model']}")
    return 0
