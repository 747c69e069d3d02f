#!/usr/bin/env bash
# Wall time of the classical baselines (knn pca kde ocsvm, all classes, seeds 0-2) under
# `--executor serial` (one process, torch's own thread count) and `--executor ray` (one cell a
# task, one thread a cell), on each dataset, into fresh folders. Run it on an otherwise idle
# machine: it measures the machine. Appends one JSON line per run to OUT (default
# runs/executor-speed.jsonl); the bench folders stay under runs/executor-speed/ for their records.
# Usage: benchmarks/executor_speed.sh [DATASET ...]   (default: mnist fashion-mnist cifar10-jpeg)
set -euo pipefail
cd "$(dirname "$0")/.."
NK=${NK:-.venv/bin/noveltykit}
OUT=${OUT:-runs/executor-speed.jsonl}
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
CORES=$(nproc)
mkdir -p runs/executor-speed

for ds in ${@:-mnist fashion-mnist cifar10-jpeg}; do
  "$NK" data fetch --dataset "$ds" > /dev/null  # in the cache before either clock starts
  for ex in serial ray; do
    dir=runs/executor-speed/$ds-$ex
    rm -rf "$dir"
    start=$(date +%s.%N)
    "$NK" bench --dataset "$ds" --classes all --seeds 0,1,2 --method knn pca kde ocsvm \
        --executor $ex --out "$dir" --quiet > /dev/null
    end=$(date +%s.%N)
    python3 - "$ds" "$ex" "$start" "$end" "$CPU" "$CORES" "$dir" >> "$OUT" <<'EOF'
import json, sys
ds, ex, start, end, cpu, cores, folder = sys.argv[1:]
cells = json.load(open(f"{folder}/results.json"))["results"]
print(json.dumps({"dataset": ds, "executor": ex, "wall_seconds": round(float(end) - float(start), 1),
                  "cells": len(cells), "cell_seconds": round(sum(c["fit_seconds"] + c["score_seconds"] for c in cells), 1),
                  "cpu": cpu, "cores": int(cores), "folder": folder}))
EOF
    tail -n 1 "$OUT"
  done
done
