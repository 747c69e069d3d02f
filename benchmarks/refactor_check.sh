#!/usr/bin/env bash
# Behaviour of a refactor, on real data: a small one-vs-rest bench of knn, ae, ede-gan, kdgan,
# gan-disc and selfsup on two MNIST classes, one thread, every model saved; prints each cell's
# AUROC, threshold and the sha256 of its saved weights (from the model's config.json), then the
# hashes of benchmarks/weights_hash.py. Run it on the old and the new commit on one machine and
# diff the two outputs: a refactor that changes no behaviour gives identical lines.
#
#   benchmarks/refactor_check.sh OUT > before.txt     # on the old commit (e.g. a git worktree)
#   benchmarks/refactor_check.sh OUT2 > after.txt     # on the new one; diff before.txt after.txt
#
# PYTHON (default .venv/bin/python) runs it; the package is imported from this checkout's src/.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
out=${1:?usage: refactor_check.sh OUT}
PY=${PYTHON:-$here/.venv/bin/python}
export PYTHONPATH="$here/src" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
"$PY" -m noveltykit.cli bench --dataset mnist --protocol one-vs-rest --classes 3,8 --seeds 0 --quiet \
    --no-plots --save-models --out "$out" --method knn ae:epochs=2 ede-gan:epochs=1 \
    kdgan:budget=quick,teacher_budget=quick gan-disc:epochs=1 selfsup:epochs=1 >&2
"$PY" - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for r in sorted(json.loads((out / "results.json").read_text())["results"], key=lambda r: (r["method"], r["class"])):
    sha = json.loads((out / r["model"] / "config.json").read_text())["weights_sha256"][:16]
    print(f"{r['method']:<40} class {r['class']} auroc {r['auroc']!r} threshold {r['threshold']!r} weights {sha}")
PY
"$PY" "$here/benchmarks/weights_hash.py"
