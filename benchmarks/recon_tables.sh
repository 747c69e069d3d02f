#!/usr/bin/env bash
# The reconstruction family's and Deep SVDD's tables (docs/reconstruction.md), at the CPU budget
# (the detectors' defaults). Each stage runs two `noveltykit bench` processes, one thread each, on
# one output folder: they share its cells (each runs what the other has not claimed). Resumable:
# rerun it and finished cells are skipped. Usage: benchmarks/recon_tables.sh [STAGE ...]
#   stages: mnist mnist-seeds fashion-mnist cifar10-jpeg loo-mnist (default: all, in that order)
set -uo pipefail
cd "$(dirname "$0")/.."
. benchmarks/two_benches.sh
METHODS="ae conv-ae dae contractive-ae vae deep-svdd"

stage() {
  case $1 in
    mnist|fashion-mnist|cifar10-jpeg)
      two --dataset "$1" --protocol one-vs-rest --classes all --seeds 0 --method $METHODS --out "runs/recon-$1" ;;
    mnist-seeds)  # Table IV averages three runs: seeds 1 and 2 on three classes (fixed before any run)
      two --dataset mnist --protocol one-vs-rest --classes 2,3,8 --seeds 1,2 --method vae deep-svdd \
          --out runs/recon-mnist ;;
    loo-mnist)  # each digit held out in turn; 9 classes of training images, so 3 epochs (about the
                # optimiser steps of 27 one-class epochs; EDE-GAN 1, as 9 of its 8-epoch cpu budget); kNN beside
      two --dataset mnist --protocol leave-one-out --classes all --seeds 0 --method knn ede-gan:epochs=1 \
          ae:epochs=3 conv-ae:epochs=3 vae:epochs=3 deep-svdd:epochs=3,pretrain_epochs=1 --out runs/recon-loo-mnist ;;
    *) echo "unknown stage $1" >&2; return 2 ;;
  esac
}

run_stages ${@:-mnist mnist-seeds fashion-mnist cifar10-jpeg loo-mnist}
