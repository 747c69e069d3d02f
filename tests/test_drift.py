"""The drift alarm: more images flagged than the threshold's quantile explains. The pure module
(the exact binomial tail against scipy's test, the sliding window, the expected rate from a saved
model), then the same check through `noveltykit score` on a folder and through the real server:
quiet on the model's own normal validation images, raised by a stream of novel ones."""
import numpy as np
import pytest

from noveltykit.apply.drift import DriftMonitor, binomial_tail, expected_rate, flag_check
from noveltykit.apply.fit import fit_folder
from noveltykit.cli import main
from noveltykit.detectors import load

from test_apply import write


def test_the_binomial_tail_is_scipys_one_sided_test():
    from scipy.stats import binomtest
    for n in (1, 7, 60, 500, 20_000):
        for p in (0.0, 1e-4, 0.01, 0.05, 0.5, 0.97, 1.0):
            for k in sorted({0, 1, n // 3, int(n * p), int(n * p) + 1, n // 2, n - 1, n} & set(range(n + 1))):
                want = binomtest(k, n, p, alternative="greater").pvalue
                assert binomial_tail(k, n, p) == pytest.approx(want, rel=1e-9, abs=1e-15), (k, n, p)


def test_the_check_fires_only_past_alpha_and_the_minimum():
    # 500 images at 5%: 25 expected. 34 flagged is within chance; 50 is not (p ~ 1e-5)
    quiet, loud = flag_check(34, 500, 0.05, "q"), flag_check(50, 500, 0.05, "q")
    assert not quiet.alarm and quiet.p_value > 0.01
    assert loud.alarm and loud.p_value < 1e-4
    assert "DRIFT: more flagged than the threshold explains" in loud.line()
    assert loud.line().startswith("50 of 500 images flagged (10.0%), expected about 5.0% from q: DRIFT")
    assert quiet.line().endswith("consistent (one-sided binomial p = " + f"{quiet.p_value:.2g}, alpha 0.001)")
    assert not flag_check(0, 500, 0.05).alarm  # fewer than expected: not drift towards novelty
    few = flag_check(40, 40, 0.05, "q")  # every one flagged, but fewer than 50 images: no verdict
    assert few.p_value is None and not few.alarm and "too few images to check (fewer than 50)" in few.line()
    unknown = flag_check(3, 100, None, "the model keeps no validation scores")
    assert unknown.p_value is None and unknown.line() == ("3 of 100 images flagged (3.0%); no drift check: the "
                                                          "model keeps no validation scores")


def test_the_window_slides():
    monitor = DriftMonitor(0.05, "q0.95", window=100, min_images=50)
    monitor.add([False] * 95 + [True] * 5)
    assert monitor.state()["flagged"] == 5 and not monitor.state()["alarm"]
    monitor.add([True] * 30)  # the window: the last 100, of which 35 flagged
    state = monitor.state()
    assert (state["images"], state["flagged"], state["window"]) == (100, 35, 100) and state["alarm"]
    monitor.add([False] * 100)  # all of those fall out again
    assert monitor.state()["flagged"] == 0 and not monitor.state()["alarm"]
    assert DriftMonitor(0.05, window=20).min_images == 20  # a small window is checked once full
    with pytest.raises(ValueError, match="at least 1"):
        DriftMonitor(0.05, window=0)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """knn fitted on 30 normal images with 60 of its own validation images (threshold q0.95)."""
    root = tmp_path_factory.mktemp("drift")
    write(root / "normal", 30, True, 32, 0)
    write(root / "val", 60, True, 32, 1)
    write(root / "novel", 60, False, 32, 2)
    fit_folder("knn:k=3", root / "normal", root / "model", val_dir=root / "val", progress=False)
    return root


def test_the_expected_rate_comes_from_the_models_quantile(model, tmp_path):
    detector = load(model / "model")
    assert expected_rate(detector) == (pytest.approx(0.05), "the threshold's quantile 0.95")
    assert expected_rate(detector, "q0.99") == (pytest.approx(0.01), "the threshold's quantile 0.99")
    scores = np.asarray(detector.validation_scores_)
    rate, source = expected_rate(detector, float(np.median(scores)))  # a score: the validation share above it
    assert rate == pytest.approx((scores > np.median(scores)).mean()) and "normal validation scores" in source
    detector.set_threshold(float(scores.max()), by="test")  # set by hand: the share above it (none)
    assert expected_rate(detector)[0] == 0.0


def test_score_prints_the_check_at_the_end_of_a_folder(model, capsys):
    assert main(["score", str(model / "model"), str(model / "val"), "--quiet", "--out",
                 str(model / "val.csv")]) == 0
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith("3 of 60 images flagged (5.0%), expected about 5.0% from the threshold's quantile 0.95: "
                           "consistent"), line
    assert main(["score", str(model / "model"), str(model / "novel"), "--quiet", "--out",
                 str(model / "novel.csv")]) == 0
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith("60 of 60 images flagged (100.0%), expected about 5.0% from the threshold's quantile "
                           "0.95: DRIFT: "), line


def test_the_server_shows_the_alarm_in_its_card_and_metrics(model):
    pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'noveltykit[serve]')")
    pytest.importorskip("prometheus_client", reason="the serve extra is not installed")
    from noveltykit.apply.serve import create_app

    from serve_helpers import metric, metric_samples, request, running
    val = [(p.name, p.read_bytes()) for p in sorted((model / "val").iterdir())]
    novel = [(p.name, p.read_bytes()) for p in sorted((model / "novel").iterdir())]
    with running(create_app(model / "model", drift_window=60)) as url:
        flags = []
        for i in range(0, 60, 20):  # the model's own normal validation images: 3 of 60 above its q0.95
            status, body = request(f"{url}/v1/score", val[i:i + 20])
            assert status == 200
            flags += [r["is_novel"] for r in body["results"]]
        drift = request(f"{url}/v1/model")[1]["drift"]
        assert (drift["window"], drift["images"], drift["flagged"]) == (60, 60, 3), drift
        assert drift["expected_rate"] == pytest.approx(0.05) and drift["min_images"] == 50
        assert drift["p_value"] > 0.3 and drift["alarm"] is False
        # a per-request threshold does not move the alarm: it counts by the model's threshold
        assert request(f"{url}/v1/score", novel[:20], {"threshold": "1e9"})[0] == 200
        assert request(f"{url}/v1/score", novel[20:40])[0] == 200
        drift = request(f"{url}/v1/model")[1]["drift"]
        flagged = 40 + sum(flags[40:])  # the window: the last 20 normal ones and the 40 novel ones
        assert (drift["images"], drift["flagged"]) == (60, flagged) and drift["alarm"] is True
        assert drift["p_value"] < 1e-20
        samples = metric_samples(request(f"{url}/metrics")[1])
    assert metric(samples, "noveltykit_drift_alarm") == 1.0
    assert metric(samples, "noveltykit_drift_window_flagged") == flagged
    assert metric(samples, "noveltykit_drift_expected_rate") == pytest.approx(0.05)
    assert metric(samples, "noveltykit_drift_p_value") == pytest.approx(drift["p_value"], rel=1e-6)
