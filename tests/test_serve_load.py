"""benchmarks/serve_load.py runs, on tiny settings (a tiny knn model, fractions of a second a cell):
its load table has every cell, answered without failures, beside the bare model's speed; its soak
sends the whole mix and finds every confirm in the bank, no 5xx, and a clean graceful stop."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

for _module in ("fastapi", "uvicorn", "prometheus_client"):
    pytest.importorskip(_module, reason="the serve extra is not installed (pip install 'noveltykit[serve]')")

from noveltykit.apply.fit import fit_folder

from test_apply import write

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "serve_load.py"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-load")
    write(root / "normal", 20, True, 16, 0)
    fit_folder("knn:k=3", root / "normal", root / "model", image_size=16, progress=False)
    return root / "model"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=180)


def test_the_load_table(model, tmp_path):
    out = tmp_path / "load.json"
    done = run(str(model), "--seconds", "0.2", "--concurrency", "1", "4", "--per-request", "1", "3",
               "--images", "6", "--out", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    cells = {(r["batching"], r["clients"], r["images_a_request"]) for r in result["rows"]}
    assert cells == {(b, c, n) for b in ("on", "off") for c in (1, 4) for n in (1, 3)}
    for r in result["rows"]:
        assert r["failed"] == 0 and r["requests"] > 0 and r["images_per_s"] > 0, r
        assert 0 < r["p50_ms"] <= r["p99_ms"], r
    assert result["bare"]["images_per_s"] > 0 and result["bare"]["detector"] == "knn"
    assert result["cpu"] and result["command"].startswith("python benchmarks/serve_load.py ")
    table = out.with_suffix(".md").read_text()
    assert "| micro-batching | clients | images a request | images/s | p50 ms | p99 ms | requests |" in table
    assert table in done.stdout and result["cpu"] in table


def test_the_soak(model, tmp_path):
    out = tmp_path / "soak.json"
    done = run(str(model), "--soak", "1.5", "--clients", "3", "--images", "4", "--out", str(out))
    soak = json.loads(out.read_text())["soak"]
    assert done.returncode == 0 and soak["ok"], soak
    assert set(soak["by_kind_and_status"]) == {"score", "unreadable", "oversized", "wrong_token", "confirm",
                                              "model", "metrics"}, soak["by_kind_and_status"]
    assert soak["by_kind_and_status"]["wrong_token"] == {"401": soak["by_kind_and_status"]["wrong_token"]["401"]}
    assert soak["5xx"] == 0 and soak["unexpected"] == {}
    assert soak["confirmed_images"] > 0 and soak["bank_count"] == soak["confirmed_images"]
    assert soak["unreadable_metric"] == soak["unreadable_sent"] > 0 and soak["stopped_cleanly"]
    assert len(soak["rss_mib_samples"]) == 10 and soak["rss_mib_start"] > 0
