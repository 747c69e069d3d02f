"""`noveltykit serve`: the real server (uvicorn on a free loopback port, in a thread) spoken to
over HTTP: the model card, scoring as `noveltykit score` scores (the same scores and error texts),
each limit's 4xx, a bad model folder failing at start, a novelty memory kept across a restart,
the CLI, and the page in headless Chromium where it is installed."""
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

for _module in ("fastapi", "uvicorn", "multipart"):
    pytest.importorskip(_module, reason="the serve extra is not installed (pip install 'noveltykit[serve]')")

import uvicorn

from noveltykit.apply.fit import fit_folder
from noveltykit.apply.score import score_files
from noveltykit.apply.serve import create_app
from noveltykit.cli import EXIT_MODEL, EXIT_PACKAGE, main
from noveltykit.detectors import ModelFileError, load

from test_apply import stripes, write

HOST = "127.0.0.1"
TIMEOUT = 30  # seconds, for every request and wait here


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    write(root / "normal", 30, True, 40, 0)
    fit_folder("knn:k=3", root / "normal", root / "model", progress=False)
    return root / "model"


@contextmanager
def running(app):
    """`app` served by uvicorn on a free loopback port, in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))  # the OS picks a free port; uvicorn serves on this very socket
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(int(TIMEOUT / 0.02)):  # bounded wait for start-up
            if server.started or not thread.is_alive():
                break
            time.sleep(0.02)
        assert server.started, "uvicorn did not start"
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(TIMEOUT)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def png(array: np.ndarray) -> bytes:
    buf = BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def multipart(files: list[tuple[str, bytes]], fields: dict | None = None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in (fields or {}).items()]
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request(url: str, files: list[tuple[str, bytes]] | None = None, fields: dict | None = None
            ) -> tuple[int, dict | str]:
    data = headers = None
    if files is not None or fields is not None:
        data, ctype = multipart(files or [], fields)
        headers = {"Content-Type": ctype}
    req = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            status, body, ctype = r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        status, body, ctype = e.code, e.read(), e.headers.get("Content-Type", "")
    return status, (json.loads(body) if ctype.startswith("application/json") else body.decode())


def images(n: int, vertical: bool, seed: int, size: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [stripes(vertical, size, rng) for _ in range(n)]


def test_scores_as_noveltykit_score_does(model, tmp_path):
    normal, novel = images(4, True, 5), images(4, False, 6)
    grey = stripes(True, 36, np.random.default_rng(7))[..., 0]  # grey, to a colour model
    uploads = ([(f"normal{i}.png", png(a)) for i, a in enumerate(normal)]
               + [(f"novel{i}.png", png(a)) for i, a in enumerate(novel)]
               + [("broken.png", b"not an image"), ("grey.png", png(grey))])
    for name, data in uploads:  # the same files on disk, for `score`
        (tmp_path / name).write_bytes(data)
    expected = score_files(load(model), [tmp_path / n for n, _ in uploads], progress=False)
    config = json.loads((model / "config.json").read_text())

    with running(create_app(model)) as url:
        assert request(f"{url}/healthz") == (200, {"status": "ok"})
        status, card = request(f"{url}/v1/model")
        assert status == 200 and card["detector"] == "knn" and card["params"]["k"] == 3
        assert card["threshold"] == config["threshold_"] and card["threshold_from"]["quantile"] == 0.95
        assert card["preprocessing"]["size"] == 32 and card["preprocessing"]["channels"] == 3
        assert card["training"]["n_train"] + card["training"]["n_validation"] == 30
        assert card["card"].startswith("# noveltykit model") and card["memory"] == {"enabled": False}
        assert card["limits"]["max_images"] == 64

        status, body = request(f"{url}/v1/score", uploads)
        assert status == 200 and body["threshold"] == config["threshold_"]
        rows = body["results"]
        assert [r["filename"] for r in rows] == [n for n, _ in uploads]  # upload order
        for row, want in zip(rows, expected):  # the same numbers and texts as the CLI's rows
            assert (row["score"], row["is_novel"]) == (want.score, want.is_novel), row
            assert row["error"] == want.error.replace(str(tmp_path) + "/", ""), row
            assert row["converted"] == want.converted, row  # a field added, none renamed
        by_name = {r["filename"]: r for r in rows}
        assert by_name["broken.png"]["error"] == "broken.png: not an image file Pillow can read"
        assert by_name["broken.png"]["score"] is None and by_name["broken.png"]["is_novel"] is None
        assert by_name["grey.png"]["error"] == "" and by_name["grey.png"]["score"] is not None  # converted
        assert by_name["grey.png"]["converted"] == "grey->colour" and by_name["normal0.png"]["converted"] == ""
        assert all(by_name[f"novel{i}.png"]["is_novel"] for i in range(4))
        assert sum(by_name[f"normal{i}.png"]["is_novel"] for i in range(4)) <= 1

        # a threshold of one's own, as a form field or in the query
        for status, body in (request(f"{url}/v1/score", uploads[:1], {"threshold": "1e9"}),
                             request(f"{url}/v1/score?threshold=1e9", uploads[:1])):
            assert status == 200 and body["results"][0]["threshold"] == 1e9
            assert body["results"][0]["is_novel"] is False
        status, body = request(f"{url}/v1/score", uploads[:1], {"threshold": "high"})
        assert status == 422 and "threshold" in body["detail"]


def test_limits_are_4xx_with_a_message(model):
    small = png(images(1, True, 1, 32)[0])
    app = create_app(model, max_request_bytes=20_000, max_images=3, max_pixels=60 * 60)
    with running(app) as url:
        status, body = request(f"{url}/v1/score", [("big.bin", os.urandom(30_000))])
        assert status == 413 and "over the limit of 20,000 bytes (max_request_bytes)" in body["detail"]

        # a chunked body (no Content-Length) is cut off once it passes the limit. The server answers
        # and closes while the client may still be sending: that send can then meet a reset, a race
        # of the client's, so it is tried again (at most 3 times) before the answer is read
        data, ctype = multipart([("big.bin", os.urandom(30_000))])
        for attempt in range(3):
            conn = http.client.HTTPConnection(HOST, int(url.rsplit(":", 1)[1]), timeout=TIMEOUT)
            try:
                conn.request("POST", "/v1/score", body=iter([data[i:i + 4096] for i in range(0, len(data), 4096)]),
                             headers={"Content-Type": ctype}, encode_chunked=True)
                r = conn.getresponse()
                status, detail = r.status, json.loads(r.read())["detail"]
                break
            except (ConnectionResetError, BrokenPipeError):
                if attempt == 2:
                    raise
            finally:
                conn.close()
        assert status == 413 and "max_request_bytes" in detail

        status, body = request(f"{url}/v1/score", [(f"{i}.png", small) for i in range(4)])
        assert status == 413 and body["detail"].startswith("4 images in one request is over the limit of 3")
        status, body = request(f"{url}/v1/score", [], {"threshold": "1"})
        assert status == 422 and "no images" in body["detail"] and "'files'" in body["detail"]

        large = png(np.zeros((61, 60, 3), np.uint8))  # 3,660 pixels: that image's error, the others scored
        status, body = request(f"{url}/v1/score", [("large.png", large), ("small.png", small)])
        assert status == 200
        assert body["results"][0]["error"] == ("large.png: 60x61 = 3,660 pixels is over the limit of 3,600 "
                                               "(max_pixels)")
        assert body["results"][1]["error"] == "" and body["results"][1]["score"] is not None
        assert request(f"{url}/healthz") == (200, {"status": "ok"})  # still serving


def test_a_bad_model_folder_fails_at_start(model, tmp_path, capsys):
    with pytest.raises(ModelFileError, match="no such folder"):
        create_app(tmp_path / "missing")
    broken = tmp_path / "broken"
    shutil.copytree(model, broken)
    (broken / "weights.safetensors").write_bytes(b"changed")
    with pytest.raises(ModelFileError, match="sha256 differs"):
        create_app(broken)
    assert main(["serve", str(tmp_path / "missing"), "--port", "1"]) == EXIT_MODEL
    assert "no such folder" in capsys.readouterr().err


def test_without_the_serve_extra_the_cli_says_what_to_install(model, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi -> ImportError
    monkeypatch.delitem(sys.modules, "noveltykit.apply.serve")
    assert main(["serve", str(model)]) == EXIT_PACKAGE
    assert "pip install 'noveltykit[serve]'" in capsys.readouterr().err


def test_the_cli_serves_until_stopped(model):
    with socket.socket() as s:  # a free port, for the child to bind
        s.bind((HOST, 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "noveltykit.cli", "serve", str(model), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    status = None
    try:
        for _ in range(int(TIMEOUT / 0.1)):  # bounded: up to TIMEOUT seconds for start-up
            try:
                status = request(f"http://{HOST}:{port}/healthz")[0]
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[0]
                time.sleep(0.1)
        assert status == 200
    finally:
        proc.terminate()
        out = proc.communicate(timeout=TIMEOUT)[0]
    assert f"serving {model} (knn) at http://{HOST}:{port}/" in out


def test_memory_confirm_is_kept_across_a_restart(model, tmp_path):
    pytest.importorskip("noveltykit.detectors.memory", reason="noveltykit.detectors.memory is not there yet")
    novel = [(f"novel{i}.png", png(a)) for i, a in enumerate(images(4, False, 11))]
    bank = tmp_path / "bank"
    with running(create_app(model, memory_dir=bank)) as url:
        assert request(f"{url}/v1/model")[1]["memory"]["bank_size"] == 0
        status, body = request(f"{url}/v1/score", novel)
        before = body["results"]
        assert status == 200 and body["memory"] is True and all(r["is_novel"] for r in before)
        status, body = request(f"{url}/v1/memory/confirm", novel[:1] + [("broken.png", b"x")])
        assert status == 422 and "nothing confirmed" in body["detail"] and "broken.png" in body["detail"]
        assert request(f"{url}/v1/model")[1]["memory"]["bank_size"] == 0  # all or nothing
        assert request(f"{url}/v1/memory/confirm", novel[:3]) == (
            200, {"confirmed": 3, "bank_size": 3, "files": ["novel0.png", "novel1.png", "novel2.png"]})
        after = request(f"{url}/v1/score", novel)[1]["results"]
        assert all(a["score"] < b["score"] for a, b in zip(after, before))
        assert not after[3]["is_novel"]  # like the confirmed ones, never confirmed itself: novel once
    with running(create_app(model, memory_dir=bank)) as url:  # a new app on the same folder
        assert request(f"{url}/v1/model")[1]["memory"]["bank_size"] == 3
        assert request(f"{url}/v1/score", novel)[1]["results"] == after
    with running(create_app(model)) as url:  # no memory: no confirm endpoint
        assert request(f"{url}/v1/memory/confirm", novel[:1])[0] == 404
    (tmp_path / "novel3.png").write_bytes(novel[3][1])  # `score --memory` reads the same bank
    out = tmp_path / "rows.jsonl"
    assert main(["score", str(model), str(tmp_path / "novel3.png"), "--memory", str(bank), "--out", str(out),
                 "--quiet"]) == 0
    assert json.loads(out.read_text())["score"] == after[3]["score"]


def test_the_page_is_self_contained(model):
    with running(create_app(model)) as url:
        status, page = request(f"{url}/")
        schema = request(f"{url}/openapi.json")[1]
    assert status == 200 and "<script>" in page and "v1/score" in page
    assert "http://" not in page and "https://" not in page  # no external assets
    assert "/v1/score" in schema["paths"] and "/v1/memory/confirm" not in schema["paths"]


def test_the_page_scores_in_headless_chromium(model, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from fastapi.responses import Response

    files = {f"normal{i}.png": png(a) for i, a in enumerate(images(2, True, 21))}
    files.update({f"novel{i}.png": png(a) for i, a in enumerate(images(2, False, 22))})
    files["broken.png"] = b"not an image"
    app = create_app(model)
    seen = []

    @app.middleware("http")
    async def record(request, call_next):
        response = await call_next(request)
        seen.append((request.method, request.url.path, response.status_code))
        return response

    @app.get("/try-images/{name}")
    def try_image(name: str):
        return Response(files[name], media_type="image/png")

    shot = tmp_path / "serve-page.png"
    with running(app) as url:
        page = f"{url}/?try=" + ",".join(f"/try-images/{n}" for n in files)
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--no-first-run", "--disable-extensions", "--disable-background-networking",
                        f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1000,420",
                        "--virtual-time-budget=20000", f"--screenshot={shot}", page],
                       capture_output=True, timeout=90, check=False)
    assert ("GET", "/v1/model", 200) in seen and ("POST", "/v1/score", 200) in seen  # the page's fetch() ran
    assert sum(p.startswith("/try-images/") for _, p, _ in seen) == 5
    assert shot.is_file() and Image.open(shot).size == (1000, 420)
    if os.environ.get("NOVELTYKIT_SERVE_SCREENSHOT"):  # where to keep it, e.g. docs/figures/serve-page.png
        shutil.copyfile(shot, os.environ["NOVELTYKIT_SERVE_SCREENSHOT"])


# --- anomaly maps: ?maps=1 -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def map_model(tmp_path_factory):
    from conftest import needs_weights
    if needs_weights.args[0]:
        pytest.skip(needs_weights.kwargs["reason"])
    root = tmp_path_factory.mktemp("serve-maps")
    write(root / "normal", 12, True, 64, 0)
    fit_folder("patchcore:size=64", root / "normal", root / "model", progress=False)
    return root / "model"


def decoded(b64: str) -> np.ndarray:
    import base64
    return np.asarray(Image.open(BytesIO(base64.b64decode(b64, validate=True))))


def test_maps_come_as_base64_pngs_of_the_models_overlays(map_model, tmp_path):
    uploads = [(f"normal{i}.png", png(a)) for i, a in enumerate(images(2, True, 31, 80))]
    uploads += [("novel.png", png(images(1, False, 32, 48)[0])), ("broken.png", b"not an image")]
    for name, data in uploads:  # the same files for `score --maps`
        (tmp_path / "in" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "in" / name).write_bytes(data)
    assert main(["score", str(map_model), str(tmp_path / "in"), "--maps", str(tmp_path / "maps"), "--quiet",
                 "--out", str(tmp_path / "rows.csv")]) == 0
    detector = load(map_model)
    with running(create_app(map_model, max_images=4)) as url:
        card = request(f"{url}/v1/model")[1]
        assert card["maps"] is True and card["pixel_threshold"] == detector.pixel_threshold_
        for status, body in (request(f"{url}/v1/score?maps=1", uploads), request(f"{url}/v1/score", uploads,
                                                                                 {"maps": "1"})):
            assert status == 200
            rows = {r["filename"]: r for r in body["results"]}
            for name, _ in uploads[:3]:
                row = rows[name]
                overlay = decoded(row["map_png"])
                assert overlay.shape == (64, 64, 3) and row["pixel_threshold"] == detector.pixel_threshold_
                written = np.asarray(Image.open(tmp_path / "maps" / f"{name}.png"))
                np.testing.assert_array_equal(overlay, written)  # what `score --maps` draws
            assert rows["broken.png"]["map_png"] is None and rows["broken.png"]["error"]
        plain = request(f"{url}/v1/score", uploads[:1])[1]["results"][0]  # not asked: no maps
        assert "map_png" not in plain and "pixel_threshold" not in plain
        status, body = request(f"{url}/v1/score?maps=1", uploads + uploads[:1])  # the limits still apply
        assert status == 413 and "max_images" in body["detail"]


def test_maps_from_a_model_without_them_are_a_422(model):
    with running(create_app(model)) as url:
        card = request(f"{url}/v1/model")[1]
        assert card["maps"] is False and card["pixel_threshold"] is None
        upload = [("a.png", png(images(1, True, 3)[0]))]
        for status, body in (request(f"{url}/v1/score?maps=1", upload), request(f"{url}/v1/score", upload,
                                                                                {"maps": "1"})):
            assert status == 422 and "gives no anomaly maps" in body["detail"] and "patchcore" in body["detail"]
        assert request(f"{url}/v1/score?maps=0", upload)[0] == 200


def test_the_page_asks_for_maps_when_the_card_says_so_in_headless_chromium(map_model, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    from fastapi.responses import Response

    files = {"normal.png": png(images(1, True, 41, 64)[0]), "novel.png": png(images(1, False, 42, 64)[0])}
    app = create_app(map_model)
    seen = []

    @app.middleware("http")
    async def record(request, call_next):
        response = await call_next(request)
        seen.append((request.method, request.url.path, request.url.query, response.status_code))
        return response

    @app.get("/try-images/{name}")
    def try_image(name: str):
        return Response(files[name], media_type="image/png")

    with running(app) as url:
        page = f"{url}/?try=" + ",".join(f"/try-images/{n}" for n in files)
        done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                               "--no-first-run", "--disable-extensions", "--disable-background-networking",
                               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
                               "--dump-dom", page], capture_output=True, text=True, timeout=90, check=False)
    assert ("POST", "/v1/score", "maps=1", 200) in seen, seen  # asked for the maps the card announced
    # the page as drawn: one overlay image per result, its pixels the PNG the API returned
    drawn = done.stdout.count('<img class="map" alt="anomaly map" src="data:image/png;base64,iVBORw0KGgo')  # a PNG
    assert drawn == len(files), done.stdout[-2000:]
