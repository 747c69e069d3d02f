"""`noveltykit serve`: the real server (uvicorn on a free loopback port, in a thread) spoken to
over HTTP: the model card, scoring as `noveltykit score` scores (the same scores and error texts),
each limit's 4xx, a bad model folder failing at start, a novelty memory kept across a restart,
the CLI, and the page in headless Chromium (through playwright) where both are installed. The
token, micro-batching, metrics, drift and stopping have test_serve_*.py files of their own."""
import http.client
import json
import os
import shutil
import sys
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

for _module in ("fastapi", "uvicorn", "multipart", "prometheus_client"):
    pytest.importorskip(_module, reason="the serve extra is not installed (pip install 'noveltykit[serve]')")

from noveltykit.apply.fit import fit_folder
from noveltykit.apply.score import score_files
from noveltykit.apply.serve import create_app
from noveltykit.cli import EXIT_MODEL, EXIT_PACKAGE, main
from noveltykit.detectors import ModelFileError, load

from serve_helpers import (fitted_knn, HOST, TIMEOUT, TOKEN, chromium_page, images, multipart, png, request, running,
                           serving_process)
from test_apply import stripes, write


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return fitted_knn(tmp_path_factory, "serve", 30, 40)


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
        # refused from its Content-Length, before the body is read: the server answers and closes while
        # the client may still be sending, which can meet a reset (the client's race, as below): tried
        # again, at most 3 times
        for attempt in range(3):
            try:
                status, body = request(f"{url}/v1/score", [("big.bin", os.urandom(30_000))])
                break
            except OSError:  # urllib's URLError wrapping a reset or a broken pipe
                if attempt == 2:
                    raise
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
    with serving_process(str(model)) as (url, proc):
        assert request(f"{url}/healthz") == (200, {"status": "ok"})
    port = url.rsplit(":", 1)[1]
    assert f"serving {model} (knn) at http://{HOST}:{port}/" in proc.output
    assert "no token: open to this machine; confirms refused" in proc.output
    assert "noveltykit: stopped; queue drained" in proc.output  # SIGTERM: the lifespan's end ran


def test_memory_confirm_is_kept_across_a_restart(model, tmp_path):
    pytest.importorskip("noveltykit.detectors.memory", reason="noveltykit.detectors.memory is not there yet")
    novel = [(f"novel{i}.png", png(a)) for i, a in enumerate(images(4, False, 11))]
    bank = tmp_path / "bank"
    with running(create_app(model, memory_dir=bank, token=TOKEN)) as url:  # confirms need a token
        assert request(f"{url}/v1/model", token=TOKEN)[1]["memory"]["bank_size"] == 0
        status, body = request(f"{url}/v1/score", novel, token=TOKEN)
        before = body["results"]
        assert status == 200 and body["memory"] is True and all(r["is_novel"] for r in before)
        status, body = request(f"{url}/v1/memory/confirm", novel[:1] + [("broken.png", b"x")], token=TOKEN)
        assert status == 422 and "nothing confirmed" in body["detail"] and "broken.png" in body["detail"]
        assert request(f"{url}/v1/model", token=TOKEN)[1]["memory"]["bank_size"] == 0  # all or nothing
        assert request(f"{url}/v1/memory/confirm", novel[:3], token=TOKEN) == (
            200, {"confirmed": 3, "bank_size": 3, "files": ["novel0.png", "novel1.png", "novel2.png"]})
        after = request(f"{url}/v1/score", novel, token=TOKEN)[1]["results"]
        assert all(a["score"] < b["score"] for a, b in zip(after, before))
        assert not after[3]["is_novel"]  # like the confirmed ones, never confirmed itself: novel once
    with running(create_app(model, memory_dir=bank, allow_unauthenticated_writes=True)) as url:  # the same folder
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


def test_the_page_has_no_url_hook(model):
    """The page scores only what its user picks: no query parameter makes it fetch and upload."""
    with running(create_app(model)) as url:
        page = request(f"{url}/?try=/v1/model")[1]
    assert not any(hook in page for hook in ("URLSearchParams", "location.search", "location.hash", "get('try')"))


def drawn_cards(page) -> list[dict]:
    """Each result card the page drew: its class, verdict, score text, file name, error, overlay src."""
    return page.eval_on_selector_all("#results .card", """cards => cards.map(c => ({
        kind: c.className, verdict: c.querySelector('.verdict').textContent,
        score: c.querySelector('.score').textContent, name: c.querySelector('.name').textContent,
        error: (c.querySelector('.err') || {}).textContent || '',
        map: (c.querySelector('img.map') || {}).src || null}))""")


def upload_and_score(page, files: dict[str, bytes]) -> None:
    """Pick `files` in the page's own file input, press score, wait for the drawn results."""
    page.set_input_files("#files", [{"name": n, "mimeType": "image/png", "buffer": b} for n, b in files.items()])
    page.click("button[type=submit] >> text=score")
    page.wait_for_function("document.getElementById('status').textContent.includes('image(s):')")


def test_the_page_scores_in_headless_chromium(model, tmp_path):
    files = {f"normal{i}.png": png(a) for i, a in enumerate(images(2, True, 21))}
    files.update({f"novel{i}.png": png(a) for i, a in enumerate(images(2, False, 22))})
    files["broken.png"] = b"not an image"
    with running(create_app(model)) as url, chromium_page(tmp_path) as page:
        status, want = request(f"{url}/v1/score", list(files.items()))  # the API's own answer, for comparison
        assert status == 200
        page.goto(f"{url}/")
        page.wait_for_function("document.getElementById('model').textContent.startsWith('knn on 3-channel')")
        upload_and_score(page, files)
        cards = drawn_cards(page)
        status_line = page.text_content("#status")
        shot = tmp_path / "serve-page.png"
        page.screenshot(path=str(shot))
    assert [c["name"] for c in cards] == list(files)  # one card a file, in the order picked
    for card, row in zip(cards, want["results"]):
        kind = "error" if row["error"] else ("novel" if row["is_novel"] else "normal")
        assert card["kind"] == f"card {kind}" and card["verdict"] == kind, (card, row)
        if row["score"] is None:
            assert card["score"] == ""
        else:  # the score as the page prints it: 4 significant digits
            assert float(card["score"].split()[1]) == pytest.approx(row["score"], rel=1e-3), (card, row)
        assert card["error"] == row["error"]
    assert [c["verdict"] for c in cards[2:4]] == ["novel", "novel"] and cards[4]["verdict"] == "error"
    assert status_line.startswith("5 image(s): ") and "1 unreadable" in status_line
    assert Image.open(shot).size == (1000, 420)
    if os.environ.get("NOVELTYKIT_SERVE_SCREENSHOT"):  # where to keep it, e.g. docs/figures/serve-page.png
        shutil.copyfile(shot, os.environ["NOVELTYKIT_SERVE_SCREENSHOT"])


def test_the_page_asks_for_the_token_in_headless_chromium(model, tmp_path):
    files = {"novel.png": png(images(1, False, 23)[0])}
    with running(create_app(model, token=TOKEN)) as url, chromium_page(tmp_path) as page:
        page.goto(f"{url}/")
        page.wait_for_selector("#auth", state="visible")  # the card answered 401: the page asks
        assert page.text_content("#model") == "this server needs a token"
        page.fill("#token", "not-the-token-0123456789")
        page.click("#auth button")
        page.wait_for_function("document.getElementById('auth-why').textContent.includes('refused')")
        assert page.is_visible("#auth")
        page.fill("#token", TOKEN)
        page.click("#auth button")
        page.wait_for_function("document.getElementById('model').textContent.includes('token accepted')")
        assert not page.is_visible("#auth")
        assert page.evaluate("sessionStorage.getItem('noveltykit-token')") == TOKEN  # this tab only
        upload_and_score(page, files)
        cards = drawn_cards(page)
    assert [(c["name"], c["verdict"]) for c in cards] == [("novel.png", "novel")]


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
    files = {"normal.png": png(images(1, True, 41, 64)[0]), "novel.png": png(images(1, False, 42, 64)[0])}
    app = create_app(map_model)
    seen = []

    @app.middleware("http")
    async def record(request, call_next):
        response = await call_next(request)
        seen.append((request.method, request.url.path, request.url.query, response.status_code))
        return response

    with running(app) as url, chromium_page(tmp_path) as page:
        want = request(f"{url}/v1/score?maps=1", list(files.items()))[1]["results"]
        page.goto(f"{url}/")
        page.wait_for_function("document.getElementById('model').textContent.includes('anomaly maps')")
        upload_and_score(page, files)
        cards = drawn_cards(page)
    assert seen.count(("POST", "/v1/score", "maps=1", 200)) == 2, seen  # the page asked for the maps too
    # the page as drawn: one overlay a result, its pixels the PNG the API gives for that file
    assert [c["name"] for c in cards] == list(files)
    for card, row in zip(cards, want):
        assert card["map"] == f"data:image/png;base64,{row['map_png']}", card["name"]
    assert [c["verdict"] for c in cards] == [("novel" if r["is_novel"] else "normal") for r in want]
