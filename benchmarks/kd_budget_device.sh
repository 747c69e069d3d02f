#!/usr/bin/env bash
# Fashion-MNIST u=1: does a longer or smoother P-KDGAN budget close the gap to the teacher?
# Chosen on the development split (training images only), then measured on test. Resumable.
#   1. per class, teacher + the incumbent P-KDGAN student (8 epochs a step, EMA 0.99) into OUT/classN;
#   2. classes 0 and 1: each candidate on the dev split against those very teachers;
#   3. dev_choice.py --by variant picks one (a tie keeps the incumbent); unless the incumbent wins,
#      every class gets the chosen P-KDGAN student and the student alone with as many epochs.
#   DEADLINE=540 PACK=/tmp/out benchmarks/kd_budget_device.sh
set -uo pipefail
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
nk=${NOVELTYKIT:-noveltykit}
out=runs/kd-fmnist-budget
pack=${PACK:-$out}
deadline=${DEADLINE:-540}
ds=fashion-mnist
incumbent="kdgan:structure=p23,width=1,lr=0.002"
candidates=("$incumbent" "kdgan:structure=p23,width=1,epochs=24,lr=0.002"
            "kdgan:structure=p23,width=1,lr=0.002,ema_decay=0.999")
mkdir -p "$out" "$pack"
left() { local s=$((deadline - SECONDS)); echo $((s > 1 ? s : 1)); }  # timeout 0 would mean none
bench() {  # class, methods...
    local c=$1; shift
    # shellcheck disable=SC2086
    timeout "$(left)" $nk bench --dataset $ds --classes "$c" --seeds 0 --out "$out/class$c" --quiet --no-plots \
        --device cuda --method "$@" >>"$out/class$c.log" 2>&1
}

rm -f "$out/choice.txt"
for c in 0 1 2 3 4 5 6 7 8 9; do
    (bench $c ede-gan "$incumbent"
     until [ -f "$out/choice.txt" ]; do sleep 5; done
     chosen=$(tail -2 "$out/choice.txt" | head -1) alone=$(tail -1 "$out/choice.txt")
     [ "$chosen" != "$incumbent" ] && bench $c "$chosen" "$alone") &
done
dev=()
for c in 0 1; do
    for i in "${!candidates[@]}"; do
        rows="$out/dev-class$c-$i.jsonl"
        [ -s "$rows" ] && continue
        (until ls "$out"/class$c/teachers/*/config.json >/dev/null 2>&1 || [ $SECONDS -ge $deadline ]; do sleep 5; done
         timeout "$(left)" python3 benchmarks/distill_ablation.py --dataset $ds --classes $c --device cuda \
            --teachers "$out/class$c/teachers" --variant "${candidates[$i]}" --out "$rows.partial" \
            >"$out/dev-class$c-$i.log" 2>&1 && mv "$rows.partial" "$rows") &
        dev+=($!)
    done
done
[ ${#dev[@]} -gt 0 ] && wait "${dev[@]}"
cat "$out"/dev-class*.jsonl >"$out/dev.jsonl"
python3 benchmarks/dev_choice.py "$out/dev.jsonl" --by variant --alone >"$out/choice.tmp" \
    || printf '%s\n' "# no choice: dev runs missing" "$incumbent" "-" >"$out/choice.tmp"
mv "$out/choice.tmp" "$out/choice.txt"  # releases the class processes
cat "$out/choice.txt"
wait
tar -czf "$pack/kd-budget.tar.gz" --exclude='teachers' --exclude='checkpoints' --exclude='scores' \
    --exclude='models' -C "$out" .
echo "packed at ${SECONDS}s"
