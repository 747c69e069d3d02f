"""Stopping `noveltykit serve` (a process of its own) with SIGTERM while requests are in flight:
every one is answered (200, with its own score), the model's queue is drained, the memory is on
disk, and the token comes from the environment, not the command line."""
import http.client
import json
import signal
import socket
import threading
import time
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

for _module in ("fastapi", "uvicorn", "prometheus_client"):
    pytest.importorskip(_module, reason="the serve extra is not installed (pip install 'noveltykit[serve]')")

from noveltykit.apply.serve_auth import TOKEN_ENV
from noveltykit.detectors import load
from noveltykit.detectors.memory import NoveltyMemory

from serve_helpers import (fitted_knn, HOST, TIMEOUT, TOKEN, images, metric, metric_samples, multipart, png, request,
                           serving_process)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return fitted_knn(tmp_path_factory, "serve-stop")


def test_sigterm_answers_the_requests_in_flight_and_keeps_the_memory(model, tmp_path):
    bank, n = tmp_path / "bank", 8
    uploads = [png(a) for a in images(n + 1, False, 7, 32)]
    with serving_process(str(model), "--memory", str(bank), "--max-wait-ms", "1500", "--max-batch", "64",
                         env={TOKEN_ENV: TOKEN}) as (url, proc):
        assert request(f"{url}/v1/model")[0] == 401  # the token from the environment is in force
        assert request(f"{url}/v1/memory/confirm", [("c.png", uploads[0])], token=TOKEN)[1]["bank_size"] == 1

        def in_flight(count):  # until the server holds `count` score requests
            for _ in range(int(TIMEOUT / 0.02)):
                samples = metric_samples(request(f"{url}/metrics", token=TOKEN)[1])
                if metric(samples, "noveltykit_requests_in_progress", endpoint="/v1/score") == count:
                    return
                time.sleep(0.02)
            raise AssertionError(f"the server never held {count} score requests")

        # one upload sent slowly: half its body now, the rest after the SIGTERM. While it is on its
        # way, the others wait in the batcher for it (up to --max-wait-ms): all are in flight
        body, ctype = multipart([("slow.png", uploads[n])])
        slow = socket.create_connection((HOST, int(url.rsplit(":", 1)[1])), timeout=TIMEOUT)
        slow.sendall(f"POST /v1/score HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {TOKEN}\r\n"
                     f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:100])
        in_flight(1)
        answers = [None] * n

        def send(i):
            answers[i] = request(f"{url}/v1/score", [(f"img{i}.png", uploads[i])], token=TOKEN)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        in_flight(n + 1)
        proc.send_signal(signal.SIGTERM)  # all n + 1 in flight, one of them still uploading
        time.sleep(0.3)
        assert proc.poll() is None  # still answering
        slow.sendall(body[100:])
        response = http.client.HTTPResponse(slow)
        response.begin()
        slow_answer = (response.status, json.loads(response.read()))
        slow.close()
        for t in threads:
            t.join(TIMEOUT)
        proc.wait(TIMEOUT)
    assert "--token" not in " ".join(proc.args)  # nothing secret on the command line
    assert [a[0] for a in answers] == [200] * n and slow_answer[0] == 200, (answers, slow_answer)
    memory = NoveltyMemory.open(load(model), bank)
    assert len(memory) == 1  # the confirm was on disk
    want = memory.score(np.stack([np.asarray(Image.open(BytesIO(u))).transpose(2, 0, 1) for u in uploads]))
    got = [a[1]["results"][0]["score"] for a in answers] + [slow_answer[1]["results"][0]["score"]]
    np.testing.assert_allclose(got, want, rtol=1e-6)  # each its own image's score
    assert "Shutting down" in proc.output and "Waiting for" in proc.output  # uvicorn's graceful shutdown
    assert "noveltykit: stopped; queue drained; memory of 1 item(s) on disk" in proc.output


def test_a_confirm_is_swapped_in_only_once_saved_and_scoring_never_waits_for_the_disk(model, tmp_path,
                                                                                      monkeypatch):
    from noveltykit.apply.serve_memory import SharedMemory
    detector = load(model)
    x = np.stack([np.asarray(Image.open(BytesIO(u))).transpose(2, 0, 1) for u in
                  [png(a) for a in images(3, False, 9, 32)]])
    bank = SharedMemory(detector, tmp_path / "bank", run=lambda fn: fn())
    assert bank.confirm(x[:1]) == 1
    before = bank.score(x)

    def broken_save(self, directory=None):  # a crash while writing: the old bank stays, on disk and here
        raise OSError("disk full")
    with monkeypatch.context() as m:
        m.setattr(NoveltyMemory, "save", broken_save)
        with pytest.raises(OSError, match="disk full"):
            bank.confirm(x[1:2])
    assert len(bank) == 1 and len(NoveltyMemory.open(detector, tmp_path / "bank")) == 1
    np.testing.assert_array_equal(bank.score(x), before)

    saving, release = threading.Event(), threading.Event()
    real_save = NoveltyMemory.save

    def slow_save(self, directory=None):
        saving.set()
        release.wait(TIMEOUT)
        return real_save(self, directory)
    monkeypatch.setattr(NoveltyMemory, "save", slow_save)
    confirming = threading.Thread(target=bank.confirm, args=(x[1:2],))
    confirming.start()
    assert saving.wait(TIMEOUT)
    t0 = time.perf_counter()
    np.testing.assert_array_equal(bank.score(x), before)  # while the confirm writes: the old bank, at once
    assert time.perf_counter() - t0 < 5
    release.set()
    confirming.join(TIMEOUT)
    assert len(bank) == 2 and len(NoveltyMemory.open(detector, tmp_path / "bank")) == 2
    assert bank.score(x)[1] < before[1]  # now confirmed: it scores lower
