#!/usr/bin/env bash
# Tables V and VI (docs/benchmarks.md) for one dataset, one process per class, each in its own
# folder OUT/classN so that no two processes share a results file; JOBS processes at a time.
# Per class: the teacher (ede-gan), the student alone and the P-KDGAN-II-23 student (Table V);
# on the Table VI classes also KDGAN-1..4 and P-KDGAN-II-24. Rerunning resumes.
#
#   JOBS=2 benchmarks/kd_tables.sh DATASET WIDTH LR VI_CLASSES OUT [bench options, e.g. --device cuda]
#   JOBS=10 benchmarks/kd_tables.sh fashion-mnist 1 0.002 2,6,8 runs/kd-fmnist --device cuda
# Then: noveltykit report OUT/class?/ --methods ...  and  python benchmarks/distill_table.py OUT/class?/ ...
# NOVELTYKIT names the command (default `noveltykit`; e.g. "python3 -m noveltykit.cli").
set -euo pipefail
if [ $# -lt 5 ]; then sed -n 2,10p "$0"; exit 2; fi
dataset=$1 u=$2 lr=$3 vi=$4 out=$5
shift 5
mkdir -p "$out"

run_class() {
    local c=$1
    shift
    local methods=(ede-gan "ede-gan:width=$u,epochs=16,lr=$lr" "kdgan:structure=p23,width=$u,lr=$lr")
    if [[ ",$vi," == *",$c,"* ]]; then
        for s in 1 2 3 4; do methods+=("kdgan:structure=$s,width=$u,epochs=16,lr=$lr"); done
        methods+=("kdgan:structure=p24,width=$u,lr=$lr")
    fi
    # shellcheck disable=SC2086  # NOVELTYKIT may be a command with arguments
    ${NOVELTYKIT:-noveltykit} bench --dataset "$dataset" --classes "$c" --seeds 0 --out "$out/class$c" \
        --quiet --no-plots --method "${methods[@]}" "$@" >"$out/class$c.log" 2>&1 \
        && echo "class $c done" || echo "class $c FAILED (see $out/class$c.log)"
}
export -f run_class
export dataset u lr vi out
# the Table VI classes first: they have the most cells
{ tr , '\n' <<<"$vi"; seq 0 9 | grep -vxF -f <(tr , '\n' <<<"$vi"); } \
    | xargs -P "${JOBS:-2}" -I{} bash -c 'run_class "$@"' _ {} "$@"
