"""`noveltykit serve MODEL`: score uploaded images over HTTP with a saved model.

The model is loaded once, when the app is made; a folder that is not a loadable model fails
there (ModelFileError), so the server never starts with a broken one. Endpoints:

    GET  /                   a page to pick images, upload them and see each one's score and verdict
    GET  /healthz            {"status": "ok"}
    GET  /v1/model           the model card: detector, params, threshold and where it came from,
                             preprocessing, training facts, versions, limits, memory, maps (whether
                             it gives anomaly maps) and pixel_threshold (null without maps)
    POST /v1/score           multipart form field `files` (repeated), optional `threshold` (form or
                             query); one entry a file, in upload order: filename, score, threshold,
                             is_novel, error, converted (as `score`'s column). With `maps=1` (form
                             or query) each entry also has map_png (its overlay as `score --maps`
                             draws it, a base64 PNG at the model's input size; null when unreadable)
                             and pixel_threshold; a model without maps answers 422
    POST /v1/memory/confirm  (only with a memory folder) `files` as confirmed novelties; returns the
                             bank size

Each upload is read as `noveltykit score` reads a file (the model's size and channels: a grey image
for a colour model is repeated, a colour one for a grey model turned to luminance), and an image
that cannot be read is an entry with the same error text and no score, while the others are scored.
An image over `max_pixels` is such an entry too (its header is read, it is never decoded).

Limits, each a JSON error {"detail": message}: a request body over `max_request_bytes` -> 413
(refused from its Content-Length before it is read, or as soon as a chunked body passes it); more
than `max_images` files -> 413; no files -> 422; a bad `threshold` -> 422; `maps=1` to a model
without maps -> 422 (before any upload is read). When a memory folder is given, /v1/score scores
with the memory (`NoveltyMemory.score`: confirmed novelties habituate); the maps stay the model's.
"""
from __future__ import annotations

import base64
import json
import math
import sys
import threading
from pathlib import Path
from typing import Annotated

import numpy as np

try:
    import fastapi  # noqa: F401
    import multipart  # noqa: F401  (python-multipart: FastAPI's form parser)
    from fastapi import FastAPI, File, Form, Query, Request, UploadFile
    from fastapi.exceptions import HTTPException, RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
except ImportError as exc:  # the CLI turns this into its "optional package" status
    raise ImportError(f"noveltykit serve needs the serve extra ({exc.name or exc} is not installed): "
                      "pip install 'noveltykit[serve]'") from exc

from ..data.folder import DEFAULT_MAX_PIXELS, load_image_bytes
from ..detectors import Detector, load
from ..detectors.base import CARD_FILE, CONFIG_FILE
from .limits import DEFAULT_MAX_IMAGES, DEFAULT_MAX_REQUEST_BYTES
from .score_maps import check_maps, gives_maps, overlay_png

# the endpoints' parameters
Uploads = Annotated[list[UploadFile] | None, File(description="image files (repeat the field)")]
FormThreshold = Annotated[float | None, Form(description="instead of the model's threshold")]
QueryThreshold = Annotated[float | None, Query(alias="threshold", description="the same, as a query parameter")]
FormMaps = Annotated[bool | None, Form(description="1: each result also has its anomaly map drawn over the image "
                                                   "(map_png, base64 PNG) and pixel_threshold")]
QueryMaps = Annotated[bool | None, Query(alias="maps", description="the same, as a query parameter")]


def _finite(value):
    """JSON has no NaN or inf: those become null (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class _BodyLimit:
    """Pure ASGI middleware: a request body over `max_bytes` is a 413, before the app reads it when
    Content-Length says so, else as soon as the chunks received pass it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def message(self, size: str) -> str:
        return f"request body of {size} is over the limit of {self.max_bytes:,} bytes (max_request_bytes)"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes:
            response = JSONResponse({"detail": self.message(f"{int(length):,} bytes")}, status_code=413,
                                    headers={"Connection": "close"})
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # the app's error handling turns this into the response
                    raise HTTPException(413, self.message(f"over {self.max_bytes:,} bytes"),
                                        headers={"Connection": "close"})
            return message

        return await self.app(scope, limited, send)


def model_card(model_dir: Path, detector: Detector) -> dict:
    """What /v1/model returns: the saved config (less the weights' checksum), the card's text."""
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    card_path = model_dir / CARD_FILE
    return _finite({
        "model": model_dir.name,
        "detector": detector.name,
        "params": config.get("params", detector.get_params()),
        "threshold": float(detector.threshold_),
        "threshold_from": config.get("threshold_from"),
        "input_shape": list(detector.input_shape_),
        "preprocessing": detector.preprocessing_.to_dict(),
        "training": detector.training_,
        "fitted": config.get("fitted", {}),
        "schema": config.get("schema"),
        "noveltykit_version": config.get("noveltykit_version"),
        "versions": config.get("versions", {}),
        "weights_sha256": config.get("weights_sha256"),
        "card": card_path.read_text() if card_path.is_file() else None,
        "maps": gives_maps(detector),
        "pixel_threshold": float(detector.pixel_threshold_) if gives_maps(detector) else None,
    })


def create_app(model_dir: str | Path, *, memory_dir: str | Path | None = None,
               max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
               max_images: int = DEFAULT_MAX_IMAGES) -> FastAPI:
    """The app serving the model in `model_dir` (loaded now: a bad folder raises ModelFileError).
    `memory_dir`: a NoveltyMemory folder (made if new); scoring then goes through the memory and
    /v1/memory/confirm adds confirmed novelties to it."""
    for name, value in (("max_request_bytes", max_request_bytes), ("max_pixels", max_pixels),
                        ("max_images", max_images)):
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    model_dir = Path(model_dir)
    detector = load(model_dir)
    spec = detector.preprocessing_
    card = model_card(model_dir, detector)
    memory = None
    if memory_dir is not None:
        from ..detectors.memory import NoveltyMemory
        memory = NoveltyMemory.open(detector, memory_dir)
    lock = threading.Lock()  # one request at a time uses the model (and the memory's bank)
    limits = {"max_request_bytes": int(max_request_bytes), "max_pixels": int(max_pixels),
              "max_images": int(max_images)}

    app = FastAPI(title=f"noveltykit: {detector.name} ({model_dir.name})",
                  description="One-class novelty detection: higher score = more novel; novel when above "
                              "the threshold.", version=card.get("noveltykit_version") or "")
    app.add_middleware(_BodyLimit, max_bytes=int(max_request_bytes))
    app.state.detector, app.state.memory, app.state.limits = detector, memory, limits

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):  # one message, not pydantic's list
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ())[1:]) or "request"
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(parts)}, status_code=422)

    def read_uploads(files: list[UploadFile] | None) -> list[tuple[str, np.ndarray | None, str, str]]:
        """(filename, uint8 (C, size, size) or None, error, channel conversion) a file, in upload order."""
        if not files:
            raise HTTPException(422, "no images: upload one or more as the multipart form field 'files'")
        if len(files) > max_images:
            raise HTTPException(413, f"{len(files)} images in one request is over the limit of {max_images} "
                                     "(max_images); send them in several requests")
        out = []
        for i, f in enumerate(files):
            name = f.filename or f"upload {i + 1}"
            try:
                chw = load_image_bytes(f.file.read(), spec.size, max_pixels, name)
                out.append((name, spec.conform(chw), "", spec.conversion(chw)))
            except ValueError as exc:  # the same texts as `noveltykit score`
                out.append((name, None, str(exc), ""))
        return out

    def threshold_of(form_value: float | None, query_value: float | None) -> float:
        t = form_value if form_value is not None else query_value
        if t is None:
            return float(detector.threshold_)
        if not math.isfinite(t):
            raise HTTPException(422, f"threshold: must be a finite number, got {t}")
        return float(t)

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/v1/model")
    def get_model():
        bank = {"enabled": memory is not None}
        if memory is not None:
            bank.update(directory=Path(memory_dir).name, bank_size=len(memory), habituation=memory.habituation,
                        max_items=memory.max_items)
        return {**card, "limits": limits, "memory": bank}

    @app.post("/v1/score")
    def score(files: Uploads = None, threshold: FormThreshold = None, threshold_query: QueryThreshold = None,
              maps: FormMaps = None, maps_query: QueryMaps = None):
        t = threshold_of(threshold, threshold_query)
        want_maps = bool(maps if maps is not None else maps_query)
        if want_maps:
            try:
                check_maps(detector, model_dir.name)
            except ValueError as exc:  # before any upload is read
                raise HTTPException(422, f"maps: {exc}") from None
        entries = read_uploads(files)
        good = [i for i, (_, x, _, _) in enumerate(entries) if x is not None]
        scores: dict[int, float] = {}
        pngs: dict[int, str] = {}
        if good:
            batch = np.stack([entries[i][1] for i in good])
            with lock:
                values = memory.score(batch) if memory is not None else detector.decision_function(batch)
                drawn = overlay_png(detector, batch) if want_maps else []
            scores = {i: float(s) for i, s in zip(good, np.asarray(values, np.float64))}
            pngs = {i: base64.b64encode(data).decode("ascii") for i, data in zip(good, drawn)}
        results = []
        for i, (name, _, error, converted) in enumerate(entries):
            s = scores.get(i)
            results.append({"filename": name, "score": s if s is None or math.isfinite(s) else None,
                            "threshold": t, "is_novel": None if s is None else bool(s > t), "error": error,
                            "converted": converted})
            if want_maps:
                results[-1].update(map_png=pngs.get(i), pixel_threshold=float(detector.pixel_threshold_))
        return {"detector": detector.name, "threshold": t, "memory": memory is not None, "results": results}

    if memory is not None:
        @app.post("/v1/memory/confirm")
        def confirm(files: Uploads = None):
            entries = read_uploads(files)
            bad = [e for _, x, e, _ in entries if x is None]
            if bad:  # all or nothing: a bank is not left holding part of what was meant
                raise HTTPException(422, "nothing confirmed; unreadable: " + "; ".join(bad))
            with lock:
                size = memory.confirm(np.stack([x for _, x, _, _ in entries]))
            return {"confirmed": len(entries), "bank_size": int(size), "files": [n for n, _, _, _ in entries]}

    @app.get("/", response_class=HTMLResponse)
    def page():
        return HTMLResponse(PAGE)

    return app


def serve(model_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, memory_dir: str | Path | None = None,
          max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
          max_images: int = DEFAULT_MAX_IMAGES) -> None:
    """Make the app (a bad model fails here, before listening) and run it with uvicorn until stopped."""
    import uvicorn
    app = create_app(model_dir, memory_dir=memory_dir, max_request_bytes=max_request_bytes,
                     max_pixels=max_pixels, max_images=max_images)
    print(f"noveltykit: serving {model_dir} ({app.state.detector.name}) at http://{host}:{port}/ (the page; "
          "API: /v1/score, /v1/model, docs at /docs); Ctrl-C stops", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info")


# The page at /: no external assets. `?try=/a.png,/b.png` scores those same-origin URLs on load, as
# if picked (for trying the page, and for its test).
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>noveltykit</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:15px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
 h1{font-size:1.3em;margin:0 0 .3em} #model{color:#555;margin-bottom:1em}
 form{display:flex;gap:.8em;align-items:center;flex-wrap:wrap;margin-bottom:1em}
 #status{color:#555} .grid{display:flex;flex-wrap:wrap;gap:12px}
 .card{background:#fff;border:3px solid #ccc;border-radius:8px;padding:8px;width:150px;text-align:center}
 .card img{width:128px;height:128px;object-fit:contain;image-rendering:pixelated;background:#eee}
 .card.maps{width:290px} .card img.map{margin-left:6px}
 .card.novel{border-color:#d33} .card.normal{border-color:#2a2} .card.error{border-color:#888}
 .name{font-size:.8em;word-break:break-all;color:#444} .verdict{font-weight:bold}
 .novel .verdict{color:#d33} .normal .verdict{color:#2a2} .error .verdict{color:#666}
 .err{font-size:.75em;color:#a00;word-break:break-word}
</style></head><body>
<h1>noveltykit</h1><div id="model">loading the model card...</div>
<form id="f"><input type="file" id="files" accept="image/*" multiple>
 <label>threshold <input type="number" step="any" id="threshold" placeholder="model's" size="10"></label>
 <button type="submit">score</button><span id="status"></span></form>
<div class="grid" id="results"></div>
<script>
const $ = id => document.getElementById(id);
const esc = s => String(s).replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
let withMaps = false;  // the card says whether the model gives anomaly maps: then each result shows its own
const cardRead = fetch('v1/model').then(r => r.json()).then(m => {
  withMaps = m.maps === true;
  $('model').textContent = `${m.detector} on ${m.preprocessing.channels}-channel ${m.preprocessing.size}x` +
    `${m.preprocessing.size} images; threshold ${Number(m.threshold).toPrecision(6)}` +
    (withMaps ? `; anomaly maps (pixel threshold ${Number(m.pixel_threshold).toPrecision(6)}, outlined)` : '') +
    (m.memory && m.memory.enabled ? '; with a novelty memory' : '') + `; at most ${m.limits.max_images} images a request`;
}).catch(e => { $('model').textContent = 'could not read /v1/model: ' + e; });
async function score(files) {
  if (!files.length) { $('status').textContent = 'pick one or more images'; return; }
  const body = new FormData();
  for (const f of files) body.append('files', f, f.name);
  const t = $('threshold').value.trim();
  if (t) body.append('threshold', t);
  await cardRead;  // whether to ask for maps
  $('status').textContent = `scoring ${files.length} image(s)...`;
  let r, data;
  try { r = await fetch(withMaps ? 'v1/score?maps=1' : 'v1/score', {method: 'POST', body}); data = await r.json(); }
  catch (e) { $('status').textContent = 'request failed: ' + e; return; }
  if (!r.ok) { $('status').textContent = `error ${r.status}: ${data.detail}`; return; }
  const out = $('results'); out.innerHTML = '';
  data.results.forEach((row, i) => {
    const kind = row.error ? 'error' : (row.is_novel ? 'novel' : 'normal');
    const card = document.createElement('div'); card.className = 'card ' + kind + (withMaps ? ' maps' : '');
    const overlay = row.map_png ? `<img class="map" alt="anomaly map" src="data:image/png;base64,${row.map_png}">` : '';
    card.innerHTML = `<img alt="">${overlay}` +
      `<div class="verdict">${kind}</div>` +
      `<div>${row.score === null ? '' : 'score ' + Number(row.score).toPrecision(4)}</div>` +
      `<div class="name">${esc(row.filename)}</div>` + (row.error ? `<div class="err">${esc(row.error)}</div>` : '');
    const img = card.querySelector('img');
    img.onerror = () => { img.style.visibility = 'hidden'; };  // not an image the browser shows either
    img.src = URL.createObjectURL(files[i]);
    out.appendChild(card);
  });
  const n = data.results.filter(x => x.is_novel).length, bad = data.results.filter(x => x.error).length;
  $('status').textContent = `${data.results.length} image(s): ${n} novel, ${bad} unreadable (threshold ${Number(data.threshold).toPrecision(6)})`;
}
$('f').addEventListener('submit', e => { e.preventDefault(); score(Array.from($('files').files)); });
const tries = new URLSearchParams(location.search).get('try');
if (tries) (async () => {
  const files = [];
  for (const u of tries.split(',').filter(Boolean)) {
    const url = new URL(u, location.href);
    if (url.origin !== location.origin) continue;  // same-origin only
    const blob = await (await fetch(url)).blob();
    files.push(new File([blob], url.pathname.split('/').pop(), {type: blob.type}));
  }
  await score(files);
})();
</script></body></html>
"""
