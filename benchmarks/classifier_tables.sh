#!/usr/bin/env bash
# The classifier families' tables (docs/classifiers.md): selfsup, certainty and the Bayes factor,
# at the CPU budget (the detectors' defaults unless a spec says otherwise). Each stage runs two
# `noveltykit bench` processes, one thread each, on one output folder; resumable.
# Usage: benchmarks/classifier_tables.sh [STAGE ...]
#   stages: bayes-mnist bayes-fashion-mnist bayes-cifar10-jpeg (the three Bayes factor backgrounds),
#           selfsup-cifar10-jpeg selfsup-fashion-mnist selfsup-mnist (rot4),
#           geom72-cifar10-jpeg geom72-fashion-mnist geom72-mnist, loo-mnist (certainty, Bayes factor),
#           loo-mnist-selfsup, sweep-cifar10-jpeg sweep-fashion-mnist (selfsup's development-split
#           study), chosen-cifar10-jpeg chosen-fashion-mnist (the column of the variant that study chose)
set -uo pipefail
cd "$(dirname "$0")/.."
. benchmarks/two_benches.sh
BAYES="bayes-factor bayes-factor:background=uniform bayes-factor:background=compression"

stage() {
  case $1 in
    bayes-*)   two --dataset "${1#bayes-}" --protocol one-vs-rest --classes all --seeds 0 --method $BAYES \
                   --out "runs/cls-${1#bayes-}" ;;
    selfsup-*) two --dataset "${1#selfsup-}" --protocol one-vs-rest --classes all --seeds 0 --method selfsup \
                   --out "runs/cls-${1#selfsup-}" ;;
    geom72-*)  two --dataset "${1#geom72-}" --protocol one-vs-rest --classes all --seeds 0 \
                   --method selfsup:transforms=geom72 --out "runs/cls-${1#geom72-}" ;;
    loo-mnist) # nine classes of training images: 3 epochs (as the reconstruction family's LOO table)
      two --dataset mnist --protocol leave-one-out --classes all --seeds 0 --method certainty:epochs=3 \
          certainty:epochs=3,mc_samples=30 $BAYES --out runs/cls-loo-mnist ;;
    loo-mnist-selfsup)
      two --dataset mnist --protocol leave-one-out --classes all --seeds 0 --method selfsup:epochs=3 \
          --out runs/cls-loo-mnist ;;
    sweep-*)   # the rule is fixed in docs/classifiers.md before the runs; no test image is read
      two_of sweep --dataset "${1#sweep-}" --method selfsup --variant selfsup:score=dirichlet \
          --variant selfsup:widen=2 --variant selfsup:epochs=60 --variant selfsup:transforms=rot4-flip \
          --classes 2,3,8 --rule mean-dev-auroc --out "runs/sweep-selfsup-${1#sweep-}" ;;
    chosen-*)  # the variant the sweep's rule chose (runs/ or its copy in docs/results/)
      local record=runs/sweep-selfsup-${1#chosen-}/sweep.json
      [ -f "$record" ] || record=docs/results/sweep-selfsup-${1#chosen-}/sweep.json
      local method
      method=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['chosen']['label'])" "$record") || return
      two --dataset "${1#chosen-}" --protocol one-vs-rest --classes all --seeds 0 --method "$method" \
          --out "runs/cls-${1#chosen-}" ;;
    *) echo "unknown stage $1" >&2; return 2 ;;
  esac
}

run_stages ${@:-bayes-mnist bayes-fashion-mnist bayes-cifar10-jpeg selfsup-cifar10-jpeg loo-mnist}
