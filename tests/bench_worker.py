"""A real benchmark process for the fault tests (tests/test_faults.py), not a test itself.

    python tests/bench_worker.py OUT METHOD [METHOD ...]

Runs every cell of the blobs dataset (3 classes, seed 0) into OUT with `slow-knn`, a kNN whose fit
sleeps $SLOW_SECONDS so that two processes overlap, and which appends one line per fit to $FIT_LOG
("k fingerprint pid"): the test counts how often each cell was really fitted.
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import make_blobs_dataset  # noqa: E402
from noveltykit.detectors import register  # noqa: E402
from noveltykit.detectors.ede_gan import fingerprint  # noqa: E402
from noveltykit.detectors.knn import KNNDetector  # noqa: E402
from noveltykit.experiments.bench import BenchConfig, BenchFailed, run_benchmark  # noqa: E402


@register
class SlowKNN(KNNDetector):
    name = "slow-knn"

    def _fit(self, x, x_val, y=None):
        with open(os.environ["FIT_LOG"], "a") as log:
            log.write(f"{self.k} {fingerprint(x)} {os.getpid()}\n")
        time.sleep(float(os.environ.get("SLOW_SECONDS", "0.2")))
        super()._fit(x, x_val, y)


if __name__ == "__main__":
    out, methods = sys.argv[1], sys.argv[2:]
    cfg = BenchConfig(dataset="blobs", methods=methods, classes="all", seeds=[0], out=out, plots=False)
    try:
        run_benchmark(cfg, dataset=make_blobs_dataset(), progress=False)
    except BenchFailed as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
