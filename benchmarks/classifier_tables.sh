#!/usr/bin/env bash
# The classifier families' tables (docs/classifiers.md): selfsup, certainty and the Bayes factor,
# at the CPU budget (the detectors' defaults unless a spec says otherwise). Each stage runs two
# `noveltykit bench` processes, one thread each, on one output folder; resumable.
# Usage: benchmarks/classifier_tables.sh [STAGE ...]
#   stages: bayes-mnist bayes-fashion-mnist bayes-cifar10-jpeg (the three Bayes factor backgrounds),
#           selfsup-cifar10-jpeg selfsup-fashion-mnist selfsup-mnist (rot4),
#           geom72-cifar10-jpeg geom72-fashion-mnist geom72-mnist, loo-mnist (certainty, Bayes factor),
#           loo-mnist-selfsup, sweep-cifar10-jpeg sweep-fashion-mnist (selfsup's development-split
#           study), chosen-cifar10-jpeg chosen-fashion-mnist (the column of the variant that study chose),
#           sweep2-cifar10-jpeg sweep2-fashion-mnist, chosen2-cifar10-jpeg chosen2-fashion-mnist (its second round),
#           sweep3-cifar10-jpeg, chosen3-cifar10-jpeg (its third round, CIFAR-10 only)
set -uo pipefail
cd "$(dirname "$0")/.."
. benchmarks/two_benches.sh
BAYES="bayes-factor bayes-factor:background=uniform bayes-factor:background=compression"

sweep_dir() {  # a finished sweep's folder: runs/NAME, else its copy docs/results/NAME
  local d
  for d in "runs/$1" "docs/results/$1"; do [ -f "$d/sweep.json" ] && { echo "$d"; return; }; done
  echo "no finished sweep $1 in runs/ or docs/results/" >&2; return 1
}

chosen_label() { python3 -c "import json, sys; print(json.load(open(sys.argv[1] + '/sweep.json'))['chosen']['label'])" "$1"; }

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
    sweep2-*)  # the second round (docs/classifiers.md, rule fixed before its runs): the first
      # round's choice is the incumbent, its trials adopted from the first round's folder
      local ds=${1#sweep2-} prev incumbent variants
      prev=$(sweep_dir "sweep-selfsup-$ds") && incumbent=$(chosen_label "$prev") || return
      case $ds in
        cifar10-jpeg)  variants="--variant selfsup:transforms=geom72 --variant selfsup:transforms=rot4-trans
                                 --variant selfsup:transforms=rot4-flip,score=dirichlet" ;;
        fashion-mnist) variants="--variant selfsup:transforms=geom72,score=dirichlet
                                 --variant selfsup:transforms=rot4-trans,score=dirichlet" ;;
        *) echo "no second round for $ds" >&2; return 2 ;;
      esac
      # shellcheck disable=SC2086  # $variants is a list of words
      two_of sweep --dataset "$ds" --method "$incumbent" $variants --classes 2,3,8 --rule mean-dev-auroc \
          --reuse "$prev" --out "runs/sweep2-selfsup-$ds" ;;
    sweep3-cifar10-jpeg)  # the third and last CPU round (docs/classifiers.md, rule fixed before its
      # runs): the incumbent refitted on the current network path, not adopted
      local incumbent
      incumbent=$(chosen_label "$(sweep_dir sweep2-selfsup-cifar10-jpeg)") || return
      two_of sweep --dataset cifar10-jpeg --method "$incumbent" --variant "$incumbent,widen=2" \
          --variant "$incumbent,shift_augment=4" --variant "$incumbent,lr_schedule=cosine" \
          --variant "$incumbent,ema_decay=0.995" --classes 2,3,8 --rule mean-dev-auroc \
          --out runs/sweep3-selfsup-cifar10-jpeg ;;
    chosen-*|chosen2-*|chosen3-*)  # the variant a round's rule chose (runs/ or its copy in docs/results/)
      local round=${1%%-*} ds=${1#*-} record method
      record=$(sweep_dir "${round/chosen/sweep}-selfsup-$ds") && method=$(chosen_label "$record") || return
      two --dataset "$ds" --protocol one-vs-rest --classes all --seeds 0 --method "$method" \
          --out "runs/cls-$ds" ;;
    *) echo "unknown stage $1" >&2; return 2 ;;
  esac
}

run_stages ${@:-bayes-mnist bayes-fashion-mnist bayes-cifar10-jpeg selfsup-cifar10-jpeg loo-mnist}
