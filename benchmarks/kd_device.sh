#!/usr/bin/env bash
# Issue 4's Fashion-MNIST (u=1) and CIFAR-10 JPEG-copy (u=8) distillation results on one CUDA
# machine, end to end, resumable (rerun the same command on the same machine to continue):
#   1. the CUDA tests;
#   2. per dataset, the students' learning rate, chosen by dev_choice.py's fixed rule from a
#      development-split study on training images only (distill_ablation.py, classes 0 and 1);
#   3. Tables V and VI at that rate (kd_tables.sh), every class in its own process: a small
#      model's step leaves the GPU idle most of the time, so processes overlap well.
# Stops starting work at DEADLINE seconds (default 540) and packs what is finished into
# $PACK/kd-device.tar.gz (results, logs, dev rows; no weights).
#   DEADLINE=540 PACK=/tmp/out benchmarks/kd_device.sh
set -uo pipefail
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
nk=${NOVELTYKIT:-noveltykit}
export NOVELTYKIT=$nk
out=runs/kd-device
pack=${PACK:-$out}
deadline=${DEADLINE:-540}
mkdir -p "$out" "$pack"
left() { local s=$((deadline - SECONDS)); echo $((s > 1 ? s : 1)); }  # timeout 0 would mean none

python3 -m pytest -q -p no:cacheprovider tests/test_train_gan.py tests/test_distill.py tests/test_bench.py \
    -k "cuda or device" >"$out/cuda-tests.log" 2>&1 &
tests=$!
for ds in fashion-mnist cifar10-jpeg; do $nk data fetch --dataset $ds >"$out/fetch-$ds.log" 2>&1 || echo "fetch $ds failed"; done

declare -A width=([fashion-mnist]=1 [cifar10-jpeg]=8) vi=([fashion-mnist]=2,6,8 [cifar10-jpeg]=1,5,9)
dev_variants() {  # the student alone and KDGAN-2, each at the teacher's rate and at 10x it
    local u=$1
    for lr in 0.0002 0.002; do
        echo --variant "ede-gan:width=$u,epochs=16,lr=$lr" --variant "kdgan:structure=2,width=$u,epochs=8,lr=$lr"
    done
}
for ds in fashion-mnist cifar10-jpeg; do
    for c in 0 1; do
        rows="$out/dev-$ds-class$c.jsonl"
        [ "$(cat "$rows" 2>/dev/null | wc -l)" -ge 4 ] && continue
        rm -f "$rows"
        # shellcheck disable=SC2046
        timeout "$(left)" python3 benchmarks/distill_ablation.py --dataset $ds --classes $c --device cuda \
            --teachers "$out/dev-teachers-$ds" --out "$rows" $(dev_variants "${width[$ds]}") \
            >"$out/dev-$ds-class$c.log" 2>&1 &
    done
done
wait $(jobs -p | grep -vx "$tests")
for ds in fashion-mnist cifar10-jpeg; do
    cat "$out"/dev-$ds-class*.jsonl >"$out/dev-$ds.jsonl"
    python3 benchmarks/dev_choice.py "$out/dev-$ds.jsonl" >"$out/lr-$ds.txt" || continue
    lr=$(tail -1 "$out/lr-$ds.txt")
    echo "$ds: student lr $lr"
    JOBS=10 timeout "$(left)" benchmarks/kd_tables.sh $ds "${width[$ds]}" "$lr" "${vi[$ds]}" "$out/$ds" \
        --device cuda &
done
wait
cat "$out/cuda-tests.log" | tail -3
tar -czf "$pack/kd-device.tar.gz" --exclude='teachers' --exclude='dev-teachers-*' --exclude='checkpoints' \
    --exclude='scores' --exclude='models' -C "$out" .
echo "packed at ${SECONDS}s"
