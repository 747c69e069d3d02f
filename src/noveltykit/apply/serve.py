"""`noveltykit serve MODEL`: score uploaded images over HTTP with a saved model.

The app's wiring: the endpoints below, over small parts that each do one job: `serve_auth` (the
bearer token), `batcher` (micro-batching on one model thread), `serve_memory` (the novelty memory,
copy-on-write), `serve_metrics` (/metrics) and `drift` (the drift alarm). The model is loaded
once, when the app is made; a folder that is not a loadable model fails there (ModelFileError),
so the server never starts with a broken one. Endpoints:

    GET  /                   a page to pick images, upload them and see each one's score and verdict
                             (it asks for the token when the server wants one)
    GET  /healthz            {"status": "ok"} (never needs the token)
    GET  /v1/model           the model card: detector, params, threshold and where it came from,
                             preprocessing, training facts, versions, limits, memory, maps (whether
                             it gives anomaly maps), pixel_threshold (null without maps), auth,
                             batching, and drift (the alarm's window, flagged, expected rate, p-value)
    POST /v1/score           multipart form field `files` (repeated), optional `threshold` (form or
                             query); one entry a file, in upload order: filename, score, threshold,
                             is_novel, error, converted (as `score`'s column). With `maps=1` (form
                             or query) each entry also has map_png (its overlay as `score --maps`
                             draws it, a base64 PNG at the model's input size; null when unreadable)
                             and pixel_threshold; a model without maps answers 422
    POST /v1/memory/confirm  (only with a memory folder) `files` as confirmed novelties; returns the
                             bank size. Needs a token (403 without one configured, unless
                             allow_unauthenticated_writes)
    GET  /metrics            Prometheus text format (`serve_metrics`)

Token (`serve_auth`): with one, /v1/* and /metrics need `Authorization: Bearer <token>` (else 401
with `WWW-Authenticate: Bearer`). `serve` reads it from a file or NOVELTYKIT_SERVE_TOKEN, and
refuses to listen on an address other machines reach without one.

Micro-batching (`batcher`): the images of concurrent /v1/score requests are scored in one model
call of at most `max_batch` images, gathered for at most `max_wait_ms` after the first, and only
while other score requests are on their way in (a lone request never waits); each request gets
its own scores, and its own threshold is applied after. `max_batch=1`: one request
a model call. Requests with maps=1 and confirms run on the same model thread, alone. Handlers
await the model without holding a thread, so many more clients than threads can wait.

Drift (`drift`): the share of the last `drift_window` scored images above the model's threshold,
against the share the threshold's quantile promises (one-sided binomial test, alpha 0.001).

Each upload is read as `noveltykit score` reads a file (the model's size and channels: a grey image
for a colour model is repeated, a colour one for a grey model turned to luminance), and an image
that cannot be read is an entry with the same error text and no score, while the others are scored.
An image over `max_pixels` is such an entry too (its header is read, it is never decoded).

Limits, each a JSON error {"detail": message}: a request body over `max_request_bytes` -> 413
(refused from its Content-Length before it is read, or as soon as a chunked body passes it); more
than `max_images` files -> 413; no files -> 422; a bad `threshold` -> 422; `maps=1` to a model
without maps -> 422 (before any upload is read). When a memory folder is given, /v1/score scores
with the memory (`NoveltyMemory.score`: confirmed novelties habituate); the maps stay the model's.

Stopping (SIGTERM or Ctrl-C, uvicorn's graceful shutdown): no new connections; the requests in
flight are answered (for up to `stop_timeout` seconds), then the model's queue is drained and the
memory is on disk (every confirm is saved before it is answered, swapped in whole).
"""
from __future__ import annotations

import asyncio
import base64
import json
import math
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

import numpy as np

try:
    import fastapi  # noqa: F401
    import python_multipart  # noqa: F401  (python-multipart: FastAPI's form parser)
    import prometheus_client  # noqa: F401  (/metrics)
    from fastapi import FastAPI, File, Form, Query, Request, UploadFile
    from fastapi.concurrency import run_in_threadpool
    from fastapi.exceptions import HTTPException, RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse, Response
except ImportError as exc:  # the CLI turns this into its "optional package" status
    raise ImportError(f"noveltykit serve needs the serve extra ({exc.name or exc} is not installed): "
                      "pip install 'noveltykit[serve]'") from exc

from ..data.folder import DEFAULT_MAX_PIXELS, load_image_bytes
from ..detectors import Detector, load
from ..detectors.base import CARD_FILE, CONFIG_FILE
from .batcher import CountArrivals, MicroBatcher, Stopped
from .drift import DEFAULT_WINDOW, DriftMonitor, expected_rate
from .limits import (DEFAULT_MAX_BATCH, DEFAULT_MAX_IMAGES, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_WAIT_MS,
                     DEFAULT_STOP_TIMEOUT)
from .score_maps import check_maps, gives_maps, overlay_png
from .serve_auth import TOKEN_ENV, WRITES, BearerAuth, auth_summary, check_bind, read_token
from .serve_memory import SharedMemory
from .serve_metrics import CountRequests, ServeMetrics

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
               max_images: int = DEFAULT_MAX_IMAGES, token: str | None = None,
               allow_unauthenticated_writes: bool = False, max_batch: int = DEFAULT_MAX_BATCH,
               max_wait_ms: float = DEFAULT_MAX_WAIT_MS, drift_window: int = DEFAULT_WINDOW) -> FastAPI:
    """The app serving the model in `model_dir` (loaded now: a bad folder raises ModelFileError).
    `memory_dir`: a NoveltyMemory folder (made if new); scoring then goes through the memory and
    /v1/memory/confirm adds confirmed novelties to it. `token`: the bearer token /v1/* and
    /metrics need (None: open, and confirms refused unless `allow_unauthenticated_writes`).
    `max_batch`, `max_wait_ms`: micro-batching; `drift_window`: images in the drift check.
    The model's thread starts now; the app's lifespan end (or `app.state.close()`) stops it."""
    for name, value in (("max_request_bytes", max_request_bytes), ("max_pixels", max_pixels),
                        ("max_images", max_images), ("max_batch", max_batch), ("drift_window", drift_window)):
        if int(value) < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if not (math.isfinite(max_wait_ms) and max_wait_ms >= 0):
        raise ValueError(f"max_wait_ms must be 0 or more, got {max_wait_ms}")
    model_dir = Path(model_dir)
    detector = load(model_dir)
    spec = detector.preprocessing_
    model_threshold = float(detector.threshold_)
    card = model_card(model_dir, detector)
    limits = {"max_request_bytes": int(max_request_bytes), "max_pixels": int(max_pixels),
              "max_images": int(max_images)}
    batching = {"max_batch": int(max_batch), "max_wait_ms": float(max_wait_ms)}
    drift = DriftMonitor(*expected_rate(detector), window=int(drift_window))
    routes = {"/", "/healthz", "/v1/model", "/v1/score", "/metrics", "/docs", "/openapi.json"}
    if memory_dir is not None:
        routes.add("/v1/memory/confirm")
    metrics = ServeMetrics(routes, drift, int(max_batch))
    bank: SharedMemory | None = None

    def scores_of(x: np.ndarray) -> np.ndarray:  # on the model's thread
        return bank.score(x) if bank is not None else detector.decision_function(x)

    batcher = MicroBatcher(scores_of, max_batch=int(max_batch), max_wait_s=float(max_wait_ms) / 1000,
                           on_batch=metrics.batch)
    if memory_dir is not None:
        try:
            bank = SharedMemory(detector, memory_dir, run=lambda fn: batcher.call(fn).result())
        except BaseException:
            batcher.close()
            raise

    closed = []

    def close() -> None:
        """Finish the model's queue, and see that the memory is on disk (once; later calls do nothing)."""
        if closed:
            return
        closed.append(True)
        drained = batcher.close(DEFAULT_STOP_TIMEOUT)
        wrote = bank.flush() if bank is not None else False
        print(f"noveltykit: stopped; {'queue drained' if drained else 'model still busy after a timeout'}"
              + (f"; memory of {len(bank)} item(s) {'written' if wrote else 'on disk'} in {bank.directory}"
                 if bank is not None else ""), file=sys.stderr, flush=True)

    @asynccontextmanager
    async def lifespan(app):
        yield
        await run_in_threadpool(close)

    app = FastAPI(title=f"noveltykit: {detector.name} ({model_dir.name})",
                  description="One-class novelty detection: higher score = more novel; novel when above "
                              "the threshold.", version=card.get("noveltykit_version") or "", lifespan=lifespan)
    # middleware, the last added first: count every request; the body limit (an oversized body is
    # refused from its Content-Length, token or not, so nobody makes the server read it); the token;
    # announce a score request to the batcher (a batch being gathered waits for it)
    app.add_middleware(CountArrivals, batcher=batcher)
    app.add_middleware(BearerAuth, token=token, allow_unauthenticated_writes=allow_unauthenticated_writes,
                       writes=WRITES if bank is not None else frozenset())
    app.add_middleware(_BodyLimit, max_bytes=int(max_request_bytes))
    app.add_middleware(CountRequests, metrics=metrics)
    app.state.detector, app.state.limits = detector, limits
    app.state.memory = bank  # SharedMemory: .current is the NoveltyMemory in use
    app.state.batcher, app.state.metrics, app.state.drift, app.state.close = batcher, metrics, drift, close

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
            return model_threshold
        if not math.isfinite(t):
            raise HTTPException(422, f"threshold: must be a finite number, got {t}")
        return float(t)

    async def on_model(future):
        """The model thread's answer, awaited without holding a thread."""
        return await asyncio.wrap_future(future)

    def stopping() -> HTTPException:
        return HTTPException(503, "the server is stopping; try again shortly", headers={"Retry-After": "5"})

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.get("/v1/model")
    def get_model():
        memory = {"enabled": bank is not None}
        if bank is not None:
            current = bank.current
            memory.update(directory=bank.directory.name, bank_size=len(current), habituation=current.habituation,
                          max_items=current.max_items)
        return {**card, "limits": limits, "memory": memory, "batching": batching,
                "auth": auth_summary(token, allow_unauthenticated_writes), "drift": _finite(drift.state())}

    @app.get("/metrics")
    def get_metrics():
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.post("/v1/score")
    async def score(request: Request, files: Uploads = None, threshold: FormThreshold = None,
                    threshold_query: QueryThreshold = None, maps: FormMaps = None, maps_query: QueryMaps = None):
        arrival = getattr(request.state, "arrival", None)  # announced to the batcher (CountArrivals)
        t = threshold_of(threshold, threshold_query)
        want_maps = bool(maps if maps is not None else maps_query)
        if want_maps:
            try:
                check_maps(detector, model_dir.name)
            except ValueError as exc:  # before any upload is read
                raise HTTPException(422, f"maps: {exc}") from None
        entries = await run_in_threadpool(read_uploads, files)
        good = [i for i, (_, x, _, _) in enumerate(entries) if x is not None]
        if not good and arrival is not None:
            arrival.done()  # nothing to score: no batch should wait for this one
        scores: dict[int, float] = {}
        pngs: dict[int, str] = {}
        if good:
            batch = np.stack([entries[i][1] for i in good])
            try:
                if want_maps:  # maps are heavier: alone on the model's thread, with their scores
                    values, drawn = await on_model(batcher.call(lambda: (scores_of(batch),
                                                                         overlay_png(detector, batch)), arrival))
                else:
                    values, drawn = await on_model(batcher.submit(batch, arrival)), []
            except Stopped:
                raise stopping() from None
            values = np.asarray(values, np.float64)
            drift.add(values > model_threshold)  # by the model's threshold, whatever this request asked
            scores = {i: float(s) for i, s in zip(good, values)}
            pngs = {i: base64.b64encode(data).decode("ascii") for i, data in zip(good, drawn)}
        metrics.scored(len(good), sum(s > t for s in scores.values()), len(entries) - len(good))
        results = []
        for i, (name, _, error, converted) in enumerate(entries):
            s = scores.get(i)
            results.append({"filename": name, "score": s if s is None or math.isfinite(s) else None,
                            "threshold": t, "is_novel": None if s is None else bool(s > t), "error": error,
                            "converted": converted})
            if want_maps:
                results[-1].update(map_png=pngs.get(i), pixel_threshold=float(detector.pixel_threshold_))
        return {"detector": detector.name, "threshold": t, "memory": bank is not None, "results": results}

    if bank is not None:
        @app.post("/v1/memory/confirm")
        async def confirm(files: Uploads = None):
            entries = await run_in_threadpool(read_uploads, files)
            bad = [e for _, x, e, _ in entries if x is None]
            if bad:  # all or nothing: a bank is not left holding part of what was meant
                metrics.unreadable.inc(len(bad))
                raise HTTPException(422, "nothing confirmed; unreadable: " + "; ".join(bad))
            try:
                size = await run_in_threadpool(bank.confirm, np.stack([x for _, x, _, _ in entries]))
            except Stopped:
                raise stopping() from None
            return {"confirmed": len(entries), "bank_size": int(size), "files": [n for n, _, _, _ in entries]}

    @app.get("/", response_class=HTMLResponse)
    def page():
        return HTMLResponse(PAGE)

    return app


def serve(model_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, memory_dir: str | Path | None = None,
          max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS,
          max_images: int = DEFAULT_MAX_IMAGES, token_file: str | Path | None = None,
          allow_unauthenticated_writes: bool = False, max_batch: int = DEFAULT_MAX_BATCH,
          max_wait_ms: float = DEFAULT_MAX_WAIT_MS, drift_window: int = DEFAULT_WINDOW,
          stop_timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
    """Read the token (`token_file`, else the environment variable NOVELTYKIT_SERVE_TOKEN), refuse a
    reachable address without one, make the app (a bad model fails here, before listening) and run
    it with uvicorn until stopped (SIGTERM / Ctrl-C: requests in flight get up to `stop_timeout`
    seconds to be answered)."""
    import uvicorn
    token = read_token(token_file)
    check_bind(host, token)
    app = create_app(model_dir, memory_dir=memory_dir, max_request_bytes=max_request_bytes, max_pixels=max_pixels,
                     max_images=max_images, token=token, allow_unauthenticated_writes=allow_unauthenticated_writes,
                     max_batch=max_batch, max_wait_ms=max_wait_ms, drift_window=drift_window)
    shown = f"[{host}]" if ":" in host else host
    if token is None:
        auth = "no token: open to this machine" + ("; confirms open to all" if allow_unauthenticated_writes
                                                   else "; confirms refused")
    else:
        auth = f"token from {token_file if token_file is not None else TOKEN_ENV} required for /v1/* and /metrics"
    print(f"noveltykit: serving {model_dir} ({app.state.detector.name}) at http://{shown}:{port}/ (the page; "
          f"API: /v1/score, /v1/model, /metrics, docs at /docs); {auth}; batches of up to {max_batch} image(s), "
          f"waiting up to {max_wait_ms:g} ms; Ctrl-C or SIGTERM stops", file=sys.stderr, flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=stop_timeout)
    finally:
        app.state.close()  # when the lifespan did not run (a failed start); idempotent


# The page at /: no external assets. It reads the model card, and when the server answers 401 it
# asks for the token (kept in this tab's sessionStorage, sent as the Bearer header).
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>noveltykit</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{font:15px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
 h1{font-size:1.3em;margin:0 0 .3em} #model{color:#555;margin-bottom:1em}
 form{display:flex;gap:.8em;align-items:center;flex-wrap:wrap;margin-bottom:1em}
 #auth{background:#fff3cd;border:1px solid #e0c060;border-radius:6px;padding:.6em} #auth[hidden]{display:none}
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
<form id="auth" hidden><span id="auth-why">This server needs a token.</span>
 <label>token <input type="password" id="token" autocomplete="off" size="30"></label>
 <button type="submit">use it</button></form>
<form id="f"><input type="file" id="files" accept="image/*" multiple>
 <label>threshold <input type="number" step="any" id="threshold" placeholder="model's" size="10"></label>
 <button type="submit">score</button><span id="status"></span></form>
<div class="grid" id="results"></div>
<script>
const $ = id => document.getElementById(id);
const esc = s => String(s).replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const KEY = 'noveltykit-token';  // this tab only: gone when it is closed
const auth = () => { const t = sessionStorage.getItem(KEY); return t ? {Authorization: 'Bearer ' + t} : {}; };
function askToken(why) {
  $('auth-why').textContent = why; $('auth').hidden = false; $('token').focus();
}
let withMaps = false;  // the card says whether the model gives anomaly maps: then each result shows its own
let card = null;
async function readCard() {
  const r = await fetch('v1/model', {headers: auth()});
  const m = await r.json();
  if (r.status === 401) {
    if (sessionStorage.getItem(KEY)) sessionStorage.removeItem(KEY);
    $('model').textContent = 'this server needs a token';
    askToken(m.detail === 'wrong token' ? 'That token was refused; enter the right one.' : 'This server needs a token.');
    return null;
  }
  if (!r.ok) throw new Error(`${r.status}: ${m.detail}`);
  withMaps = m.maps === true;
  $('model').textContent = `${m.detector} on ${m.preprocessing.channels}-channel ${m.preprocessing.size}x` +
    `${m.preprocessing.size} images; threshold ${Number(m.threshold).toPrecision(6)}` +
    (withMaps ? `; anomaly maps (pixel threshold ${Number(m.pixel_threshold).toPrecision(6)}, outlined)` : '') +
    (m.memory && m.memory.enabled ? '; with a novelty memory' : '') + `; at most ${m.limits.max_images} images a request` +
    (m.auth && m.auth.token ? '; token accepted' : '');
  return m;
}
const loadCard = () => readCard().catch(e => { $('model').textContent = 'could not read /v1/model: ' + e; return null; });
let cardRead = loadCard();
$('auth').addEventListener('submit', e => {
  e.preventDefault();
  const t = $('token').value.trim();
  if (!t) return;
  sessionStorage.setItem(KEY, t); $('token').value = ''; $('auth').hidden = true;
  cardRead = loadCard();
});
async function score(files) {
  if (!files.length) { $('status').textContent = 'pick one or more images'; return; }
  card = await cardRead;  // whether to ask for maps
  if (!card) { $('status').textContent = 'no model card: enter the token first'; return; }
  const body = new FormData();
  for (const f of files) body.append('files', f, f.name);
  const t = $('threshold').value.trim();
  if (t) body.append('threshold', t);
  $('status').textContent = `scoring ${files.length} image(s)...`;
  let r, data;
  try {
    r = await fetch(withMaps ? 'v1/score?maps=1' : 'v1/score', {method: 'POST', body, headers: auth()});
    data = await r.json();
  } catch (e) { $('status').textContent = 'request failed: ' + e; return; }
  if (r.status === 401) { sessionStorage.removeItem(KEY); askToken(data.detail); }
  if (!r.ok) { $('status').textContent = `error ${r.status}: ${data.detail}`; return; }
  const out = $('results'); out.innerHTML = '';
  data.results.forEach((row, i) => {
    const kind = row.error ? 'error' : (row.is_novel ? 'novel' : 'normal');
    const card = document.createElement('div'); card.className = 'card ' + kind + (withMaps ? ' maps' : '');
    const overlay = row.map_png ? `<img class="map" alt="anomaly map" src="data:image/png;base64,${row.map_png}">` : '';
    card.innerHTML = `<img alt="">${overlay}` +
      `<div class="verdict">${kind}</div>` +
      `<div class="score">${row.score === null ? '' : 'score ' + Number(row.score).toPrecision(4)}</div>` +
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
</script></body></html>
"""
