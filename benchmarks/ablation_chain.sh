#!/usr/bin/env bash
# Issue 33's ablation on the development split (training images only; no test image is read), one
# dataset, classes 0 and 1, seed 0. Each step is a `noveltykit sweep` of the step before's choice
# (the incumbent, which a tie keeps) against the variants below, chosen by mean-dev-auroc:
#   backbone   feat-knn:size=128 (frozen Lite0) | Lite0 at 224 | Lite1 at 240 | Lite2 at 260
#              (each backbone at the resolution it was trained at)
#   stages     B | B + stages=5+last,stage_norm=true | B + stages=6+last,stage_norm=true
#   tta        S | S + tta=flip                                        -> F, the frozen best
#   finetune   F | feat-msc (fine-tuned Lite0 at 128 px, the CPU budget of docs/finetuned.md)
#   ensemble   T | ensemble of F and feat-msc | ensemble of F and ede-gan (z-scores, equal weights)
# The rule is docs/finetuned.md's, written before these runs. Rerunning resumes (each sweep does);
# several processes may share a dataset's folder. Every fitted model is kept in OUT/fits
# (`--fit-cache`), so the ensemble step loads the members earlier steps fitted. Prints each step's choice.
#   benchmarks/ablation_chain.sh cifar10-jpeg [OUT=runs/ablation-cifar10-jpeg] [extra sweep flags]
set -euo pipefail
ds=$1; out=${2:-runs/ablation-$ds}; shift $(( $# >= 2 ? 2 : 1 ))
nk=${NOVELTYKIT:-noveltykit}
reuse=()
if [ -d "runs/dev-finetune-$ds/trials" ]; then reuse+=(--reuse "runs/dev-finetune-$ds"); fi  # step 1/2 trials

with() { case $1 in *:*) echo "$1,$2" ;; *) echo "$1:$2" ;; esac; }  # a spec with more parameters
member() { echo "$1" | sed 's/[:,]/\//g'; }  # a spec as an ensemble member: feat-knn/size=128
chosen() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['chosen']['label'])" "$1/sweep.json"; }
step() {  # step NAME INCUMBENT VARIANT...: one sweep; its choice goes to $choice (no subshell:
  local name=$1 incumbent=$2; shift 2   # the next steps must see this one in `reuse`)
  local variants=(); for v in "$@"; do variants+=(--variant "$v"); done
  $nk sweep --dataset "$ds" --classes 0,1 --seed 0 --rule mean-dev-auroc --method "$incumbent" "${variants[@]}" \
      --out "$out/$name" --fit-cache "$out/fits" "${reuse[@]}" "${EXTRA[@]}" --quiet >&2
  reuse+=(--reuse "$out/$name")
  choice=$(chosen "$out/$name")
  echo "$name: $choice"
}
EXTRA=("$@")

step backbone feat-knn:size=128 feat-knn feat-knn:backbone=efficientnet-lite1,size=240 \
    feat-knn:backbone=efficientnet-lite2,size=260
b=$choice
step stages "$b" "$(with "$b" stages=5+last,stage_norm=true)" "$(with "$b" stages=6+last,stage_norm=true)"
step tta "$choice" "$(with "$choice" tta=flip)"
f=$choice
step finetune "$f" feat-msc
step ensemble "$choice" "ensemble:members=$(member "$f")+feat-msc" "ensemble:members=$(member "$f")+ede-gan"
