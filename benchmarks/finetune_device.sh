#!/usr/bin/env bash
# Issue 33's fine-tuned detector (`feat-msc`, the CPU budget of docs/finetuned.md: Lite0 at
# 128 px, 6 frozen blocks, 5 epochs, batch 32, lr 1e-5) one-vs-rest on a lent GPU, the three
# datasets, seed 0, as one prepared script. Same spec and rule as the CPU runs (`--device` is not
# part of a method's label), so the two tables compare cell by cell.
#   1. the CUDA tests of the training path;
#   2. the datasets, each class in its own process (a batch of 32 leaves a GPU mostly idle);
#   3. stops starting work at DEADLINE seconds (default 540), and packs the tables, results and
#      logs (no models or scores) into $PACK/finetune-device.tar.gz. Rerunning resumes.
# METHOD: another spec to run the same way, e.g. METHOD=feat-msc:backbone=efficientnet-lite2,size=260
#   DEADLINE=540 PACK=$OUT benchmarks/finetune_device.sh
set -uo pipefail
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
nk=${NOVELTYKIT:-noveltykit}
out=runs/finetune-device
pack=${PACK:-$out}
deadline=${DEADLINE:-540}
jobs_at_once=${JOBS:-10}
method=${METHOD:-feat-msc}
mkdir -p "$out" "$pack"
left() { local s=$((deadline - SECONDS)); echo $((s > 1 ? s : 1)); }  # timeout 0 would mean none

python3 -m pytest -q -p no:cacheprovider tests/test_finetuned.py tests/test_bench.py -k "cuda or device" \
    >"$out/cuda-tests.log" 2>&1 &
for ds in cifar10-jpeg fashion-mnist mnist; do
    $nk data fetch --dataset $ds >"$out/fetch-$ds.log" 2>&1 || echo "fetch $ds failed"
    for c in 0 1 2 3 4 5 6 7 8 9; do
        while [ "$(jobs -rp | wc -l)" -gt "$jobs_at_once" ]; do sleep 2; done
        timeout "$(left)" $nk bench --dataset $ds --method "$method" --classes $c --seeds 0 --device cuda \
            --no-plots --quiet --out "$out/msc-$ds" >"$out/msc-$ds-class$c.log" 2>&1 &
    done
done
wait
for ds in cifar10-jpeg fashion-mnist mnist; do $nk report "$out/msc-$ds" >/dev/null 2>&1 || true; done
tail -n 3 "$out/cuda-tests.log"
tar -czf "$pack/finetune-device.tar.gz" --exclude='checkpoints' --exclude='scores' --exclude='models' -C "$out" .
echo "packed at ${SECONDS}s"
