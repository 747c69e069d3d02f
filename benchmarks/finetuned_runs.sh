#!/usr/bin/env bash
# Issue 33's CPU runs after the ablation chain, in the order docs/finetuned.md gives them, each command as the
# docs write it. Run two copies at once, one thread each (they share every folder: bench cells
# and sweep trials are locked), e.g.
#   OMP_NUM_THREADS=1 benchmarks/finetuned_runs.sh & OMP_NUM_THREADS=1 benchmarks/finetuned_runs.sh &
# Rerunning resumes: finished cells and trials are read back, a killed fit goes on from its last
# epoch. The fit caches are the ablation chain's folders, so fits made there are loaded.
set -uo pipefail
nk=${NOVELTYKIT:-noveltykit}
C='ensemble:members=feat-knn/backbone=efficientnet-lite2/size=260/tta=flip+feat-msc'
$nk bench --dataset cifar10-jpeg --method "$C" --seeds 0 --out runs/chain-best-cifar10-jpeg \
    --fit-cache runs/ablation-cifar10-jpeg/fits --quiet
$nk bench --dataset cifar10-jpeg --method "$C" --seeds 1,2 --classes 2,3,8 --out runs/chain-best-cifar10-jpeg \
    --fit-cache runs/ablation-cifar10-jpeg/fits --quiet
# the AUROC cost of training fewer blocks (a measurement; nothing follows from it)
$nk sweep --dataset cifar10-jpeg --classes 0,1 --method feat-msc \
    --variant feat-msc:frozen_blocks=12 --variant feat-msc:frozen_blocks=15 --rule mean-dev-auroc \
    --reuse runs/ablation-cifar10-jpeg/finetune --fit-cache runs/ablation-cifar10-jpeg/fits \
    --out runs/dev-frozen-cifar10-jpeg --quiet
# Fashion-MNIST: feat-msc one-vs-rest, then rule 4's second round and its choice's test run
fits=runs/ablation-fashion-mnist/fits
$nk bench --dataset fashion-mnist --method feat-msc --seeds 0 --out runs/msc-fashion-mnist --fit-cache $fits --quiet
F=feat-knn:backbone=efficientnet-lite1,size=240,tta=flip; M=feat-knn/backbone=efficientnet-lite1/size=240/tta=flip
$nk sweep --dataset fashion-mnist --classes all --seed 0 --rule mean-dev-auroc --method "$F" \
    --variant "ensemble:members=$M+feat-msc" --variant "ensemble:members=$M+ede-gan" \
    --reuse runs/ablation-fashion-mnist/ensemble --fit-cache $fits --out runs/round2-fashion-mnist --quiet
chosen=$(python3 -c "import json; print(json.load(open('runs/round2-fashion-mnist/sweep.json'))['chosen']['label'])")
if [ "$chosen" != "$F" ]; then  # the frozen best kept: its test run is done already
    $nk bench --dataset fashion-mnist --method "$chosen" --seeds 0 --out runs/round2-best-fashion-mnist \
        --fit-cache $fits --quiet
    $nk bench --dataset fashion-mnist --method "$chosen" --seeds 1,2 --classes 2,3,8 \
        --out runs/round2-best-fashion-mnist --fit-cache $fits --quiet
fi
# feat-msc beside MNIST's best; feat-panda everywhere
$nk bench --dataset mnist --method feat-msc --seeds 0 --out runs/msc-mnist --fit-cache runs/ablation-mnist/fits --quiet
for ds in cifar10-jpeg fashion-mnist mnist; do
    $nk bench --dataset $ds --method feat-panda --seeds 0 --out runs/panda-$ds --quiet
done
