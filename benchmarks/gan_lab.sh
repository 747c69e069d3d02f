#!/usr/bin/env bash
# The GAN lab's runs (docs/experiments/gan-lab.md): the discriminator detector with each fix the
# tech report tried, and EDE-GAN under the paper's unstable settings with and without
# Lotka-Volterra control. Two `noveltykit bench` processes, one thread each, on one folder;
# resumable. Every choice below was fixed before any run (see the doc for why each value).
# Usage: benchmarks/gan_lab.sh [STAGE ...]
#   stages: disc-mnist disc-fours ede-lv-mnist probe (default: all, in that order)
set -uo pipefail
cd "$(dirname "$0")/.."
. benchmarks/two_benches.sh
DISC="gan-disc gan-disc:generator=none gan-disc:init=ae gan-disc:init=ae,joint_ae=true \
  gan-disc:lr_control=proportional gan-disc:lr_control=exponential gan-disc:lr_control=lv"
# EDE-GAN's L_g is about 10 |x - x_hat|_1 + ... (1-5 on MNIST), so its Lotka-Volterra coefficients
# differ from the defaults: c = 10 keeps D learning unless L_g > 10; the paper's 2e-3 is the cap.
# rho_adv (tech report 5.1): four detectors trained with the fours held out (certainty needs the
# nine classes' labels), saved, then attacked on 64 test images (32 fours, 32 others), both attacks.
PROBED="certainty certainty:mc_samples=30 ede-gan:epochs=1 conv-ae:epochs=3"
EDE_LV="ede-gan:preset=paper,lr_control=lv,lr_alpha=0.001,lv_a=2,lv_b=1,lv_c=10,lv_d=1,lr_max=0.002"

stage() {
  case $1 in
    disc-mnist)
      two --dataset mnist --protocol one-vs-rest --classes all --seeds 0 --method $DISC --curves \
          --out runs/gan-lab-mnist ;;
    disc-fours)  # the fours held out; nine classes of images, so 2 epochs (18 one-class epochs of steps)
      two --dataset mnist --protocol leave-one-out --classes 4 --seeds 0 --curves \
          --method $(for m in $DISC; do [[ $m == *:* ]] && echo "$m,epochs=2" || echo "$m:epochs=2"; done) \
          --out runs/gan-lab-fours ;;
    ede-lv-mnist)
      two --dataset mnist --protocol one-vs-rest --classes all --seeds 0 --method ede-gan:preset=paper "$EDE_LV" \
          --curves --out runs/gan-lab-ede ;;
    probe)
      two --dataset mnist --protocol leave-one-out --classes 4 --seeds 0 --method $PROBED --save-models \
          --out runs/gan-lab-probe || return
      for model in runs/gan-lab-probe/models/*/class4_seed0/; do  # bench saves models/<method>/<cell>/
        method=$(basename "$(dirname "$model")")
        for attack in deepfool fgsm; do
          [ -f "runs/gan-lab-probe/probe/$attack/$method/probe.json" ] && continue
          OMP_NUM_THREADS=1 "$NK" probe --model "$model" --attack $attack --dataset mnist --class 4 \
              --protocol leave-one-out --n 64 --out "runs/gan-lab-probe/probe/$attack/$method" || return
        done
      done ;;
    *) echo "unknown stage $1" >&2; return 2 ;;
  esac
}

run_stages ${@:-disc-mnist disc-fours ede-lv-mnist probe}
