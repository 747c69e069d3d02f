"""Micro-batching: the batcher on its own (batches, order, limits, a failing request, draining on
close), then the real server: 16 concurrent clients, each with an image of its own, are scored
in fewer model calls than requests (the batch-size metric says so) and each gets its own score,
the one `decision_function` gives that image; a per-request threshold still applies; --max-batch
1 is one request a call; /metrics parses with prometheus_client's parser."""
import threading
import time

import numpy as np
import pytest

from noveltykit.apply.batcher import MicroBatcher, Stopped
from noveltykit.data.folder import load_image_bytes
from noveltykit.detectors import load

from serve_helpers import fitted_knn, images, metric, metric_samples, png, request, running

TIMEOUT = 30


class Recorder:
    """A model that scores an image by its first pixel and records each call's size; `gate` holds
    the first call until released, so that requests queue behind it."""

    def __init__(self, hold_first: bool = False):
        self.calls: list[int] = []
        self.gate = threading.Event()
        if not hold_first:
            self.gate.set()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.gate.wait(TIMEOUT)
        if (x[:, 0, 0, 0] == 255).any():
            raise ValueError("an image the model refuses")
        self.calls.append(len(x))
        return x[:, 0, 0, 0].astype(np.float64) * 10


def batch(*firsts: int) -> np.ndarray:
    x = np.zeros((len(firsts), 1, 2, 2), np.uint8)
    x[:, 0, 0, 0] = firsts
    return x


def test_queued_requests_share_a_call_and_each_gets_its_own_scores():
    model = Recorder(hold_first=True)
    b = MicroBatcher(model, max_batch=8, max_wait_s=0.0)
    try:
        first = b.submit(batch(1))  # taken at once, held inside the model
        time.sleep(0.05)
        futures = [b.submit(batch(*range(10 + 3 * i, 13 + 3 * i))) for i in range(4)]  # 4 requests of 3
        model.gate.set()
        assert list(first.result(TIMEOUT)) == [10.0]
        for i, f in enumerate(futures):
            assert list(f.result(TIMEOUT)) == [10.0 * v for v in range(10 + 3 * i, 13 + 3 * i)]
        # 3 + 3 fit in a batch of 8, a third request would pass it: it waits for the next batch
        assert model.calls == [1, 6, 6]
    finally:
        assert b.close(TIMEOUT)


def test_a_request_larger_than_max_batch_is_a_batch_of_its_own_and_max_batch_1_is_one_at_a_time():
    model = Recorder(hold_first=True)
    b = MicroBatcher(model, max_batch=1, max_wait_s=0.05)
    first = b.submit(batch(1))
    time.sleep(0.05)
    rest = [b.submit(batch(2, 3, 4)), b.submit(batch(5)), b.submit(batch(6))]
    model.gate.set()
    assert [list(f.result(TIMEOUT)) for f in rest] == [[20.0, 30.0, 40.0], [50.0], [60.0]]
    assert first.result(TIMEOUT)[0] == 10.0 and model.calls == [1, 3, 1, 1]
    b.close(TIMEOUT)


def test_a_failing_request_fails_alone():
    model = Recorder(hold_first=True)
    b = MicroBatcher(model, max_batch=16, max_wait_s=0.0)
    first = b.submit(batch(1))
    time.sleep(0.05)
    good, bad, also_good = b.submit(batch(2)), b.submit(batch(255)), b.submit(batch(3))
    model.gate.set()
    assert first.result(TIMEOUT)[0] == 10.0
    assert good.result(TIMEOUT)[0] == 20.0 and also_good.result(TIMEOUT)[0] == 30.0
    with pytest.raises(ValueError, match="refuses"):
        bad.result(TIMEOUT)
    b.close(TIMEOUT)


def test_a_lone_request_does_not_wait():
    model = Recorder()
    b = MicroBatcher(model, max_batch=64, max_wait_s=5.0)
    t0 = time.perf_counter()
    assert b.submit(batch(2)).result(TIMEOUT)[0] == 20.0  # nobody announced: no 5 s wait
    assert time.perf_counter() - t0 < 2.0
    late = b.arriving()  # announced, then gone without submitting: the wait ends with it
    first = b.submit(batch(3))
    time.sleep(0.05)
    late.done()
    assert first.result(TIMEOUT)[0] == 30.0 and time.perf_counter() - t0 < 2.0
    b.close(TIMEOUT)


def test_the_wait_gathers_requests_and_close_drains_the_queue():
    model, seen = Recorder(), []
    b = MicroBatcher(model, max_batch=64, max_wait_s=0.3, on_batch=lambda n, r: seen.append((n, r)))
    arrivals = [b.arriving() for _ in range(5)]  # announced first: the batch waits for them
    futures = [b.submit(batch(i), a) for i, a in enumerate(arrivals)]
    order = []
    later = b.call(lambda: order.append("call") or "done")  # other work: alone, after the batch
    assert b.close(TIMEOUT)  # drains: everything queued before the close is done
    assert [f.result(0)[0] for f in futures] == [0.0, 10.0, 20.0, 30.0, 40.0] and later.result(0) == "done"
    assert model.calls == [5] and seen == [(5, 5)] and order == ["call"]
    with pytest.raises(Stopped):
        b.submit(batch(1))
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(model, max_batch=0)


# --- the real server ---------------------------------------------------------------------------------
def create_app(*args, **kwargs):
    """The app, where the serve extra is installed (the batcher's tests above need none of it)."""
    for module in ("fastapi", "uvicorn", "multipart", "prometheus_client"):
        pytest.importorskip(module, reason="the serve extra is not installed (pip install 'noveltykit[serve]')")
    from noveltykit.apply.serve import create_app
    return create_app(*args, **kwargs)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return fitted_knn(tmp_path_factory, "serve-batching")


def concurrently(url: str, uploads: list[bytes], fields: dict | None = None) -> list:
    """Each upload in a request of its own, all sent at once from threads; the answers in order."""
    answers = [None] * len(uploads)
    start = threading.Barrier(len(uploads))

    def send(i):
        start.wait(TIMEOUT)
        answers[i] = request(f"{url}/v1/score", [(f"img{i}.png", uploads[i])], fields)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(uploads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    return answers


def test_concurrent_clients_are_batched_and_each_gets_its_own_score(model):
    detector = load(model)
    arrays = images(8, True, 3, 32) + images(8, False, 4, 32)  # normal and novel: scores far apart
    uploads = [png(a) for a in arrays]
    want = detector.decision_function(np.stack([load_image_bytes(u, 32, 10**6, "x") for u in uploads]))
    assert np.diff(np.sort(want)).min() > 10 * 1e-6 * np.abs(want).max()  # distinct at rtol 1e-6: a swap shows
    with running(create_app(model, max_batch=64, max_wait_ms=300)) as url:
        answers = concurrently(url, uploads)
        text = request(f"{url}/metrics")[1]
    assert all(status == 200 for status, _ in answers), answers
    got = [body["results"][0]["score"] for _, body in answers]
    np.testing.assert_allclose(got, want, rtol=1e-6)  # its own image's score, whatever batch it was in
    assert [body["results"][0]["filename"] for _, body in answers] == [f"img{i}.png" for i in range(16)]
    samples = metric_samples(text)
    calls, scored = metric(samples, "noveltykit_batch_images_count"), metric(samples, "noveltykit_batch_images_sum")
    assert scored == 16 and calls < 16, (calls, scored)  # fewer model calls than requests
    assert metric(samples, "noveltykit_batch_images_bucket", le="1.0") < calls or calls == 1  # a batch > 1
    assert metric(samples, "noveltykit_requests_total", endpoint="/v1/score", status="200") == 16
    assert metric(samples, "noveltykit_images_scored_total") == 16
    assert metric(samples, "noveltykit_images_novel_total") == sum(w > detector.threshold_ for w in want)
    assert metric(samples, "noveltykit_request_seconds_count", endpoint="/v1/score") == 16


def test_max_batch_1_is_one_request_a_call_and_thresholds_stay_per_request(model):
    detector = load(model)
    uploads = [png(a) for a in images(6, False, 5, 32)]
    with running(create_app(model, max_batch=1, max_wait_ms=50)) as url:
        plain = concurrently(url, uploads[:3])
        high = concurrently(url, uploads[3:], {"threshold": "1e9"})  # its own threshold, after scoring
        samples = metric_samples(request(f"{url}/metrics")[1])
    assert metric(samples, "noveltykit_batch_images_count") == 6 == metric(samples, "noveltykit_batch_images_sum")
    assert metric(samples, "noveltykit_batch_images_bucket", le="1.0") == 6
    for status, body in plain:
        row = body["results"][0]
        assert status == 200 and row["threshold"] == detector.threshold_ and row["is_novel"] is True
    for status, body in high:
        row = body["results"][0]
        assert status == 200 and row["threshold"] == 1e9 and row["is_novel"] is False and row["score"] > 0
    assert metric(samples, "noveltykit_images_novel_total") == 3  # counted by each request's threshold


def test_metrics_parse_and_count_unreadable_uploads(model):
    from prometheus_client.parser import text_string_to_metric_families
    with running(create_app(model)) as url:
        request(f"{url}/v1/score", [("a.png", png(images(1, True, 6, 32)[0])), ("bad.png", b"no image")])
        request(f"{url}/nowhere")
        status, headers_text = request(f"{url}/metrics")
    families = {f.name: f for f in text_string_to_metric_families(headers_text)}
    assert {"noveltykit_requests", "noveltykit_request_seconds", "noveltykit_images_scored",
            "noveltykit_images_novel", "noveltykit_unreadable_uploads", "noveltykit_batch_images",
            "noveltykit_drift_window_images", "noveltykit_drift_alarm"} <= set(families)
    assert families["noveltykit_request_seconds"].type == "histogram"
    samples = metric_samples(headers_text)
    assert metric(samples, "noveltykit_unreadable_uploads_total") == 1
    assert metric(samples, "noveltykit_images_scored_total") == 1
    assert metric(samples, "noveltykit_requests_total", endpoint="other", status="404") == 1  # not by its path
    assert metric(samples, "noveltykit_drift_window_images") == 1
    assert metric(samples, "noveltykit_drift_expected_rate") == pytest.approx(0.05)
    assert metric(samples, "noveltykit_drift_p_value") is None  # too few images yet
