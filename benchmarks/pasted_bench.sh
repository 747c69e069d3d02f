#!/usr/bin/env bash
# Issue 34's second benchmark with masks: real images with pasted defects
# (benchmarks/pasted_defects.py: one class's training images as normal, half its test images as
# normal test images, the other half each with a patch of another test image pasted in, the mask
# being the patch), in the MVTec layout. Each detector's image AUROC, pixel AUROC and PRO, fit and
# score seconds and peak memory per cell (bench records), seed 0. Rerunning resumes.
# Like surfaces_bench.sh: the patch detectors and feat-knn at 128 px, the reconstruction maps of
# conv-ae and ede-gan at 64 px with patchcore at 64 px beside them (masks resized with the images).
#   benchmarks/pasted_bench.sh [DATASET=cifar10-jpeg] [CLASS=0] [OUT=runs/pasted-bench]
set -euo pipefail
ds=${1:-cifar10-jpeg}; cls=${2:-0}; out=${3:-runs/pasted-bench}
nk=${NOVELTYKIT:-noveltykit}
data=runs/pasted-$ds-$cls
[ -d "$data/train" ] || python benchmarks/pasted_defects.py "$data" --dataset "$ds" --cls "$cls"
$nk bench --dataset "folder:$data" --image-size 128 --seeds 0 \
    --method patchcore:size=128 padim:size=128 feat-knn:size=128 --out "$out/$ds-$cls-128" --quiet
$nk bench --dataset "folder:$data" --image-size 64 --seeds 0 \
    --method conv-ae ede-gan patchcore:size=64 --out "$out/$ds-$cls-64" --quiet
for run in "$out/$ds-$cls-128" "$out/$ds-$cls-64"; do
  for metric in auroc pixel_auroc pro; do
    echo "== $run $metric"; $nk report "$run" --metric $metric --no-paper
  done
  $nk report "$run" --no-paper --times | sed -n '/seconds/,$p'
done
