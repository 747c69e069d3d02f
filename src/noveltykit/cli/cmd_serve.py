"""noveltykit serve: score uploaded images over HTTP (apply.serve.serve)."""
from __future__ import annotations


def add_parser(sub) -> None:
    from ..apply.drift import DEFAULT_ALPHA, DEFAULT_WINDOW
    from ..apply.limits import (DEFAULT_MAX_BATCH, DEFAULT_MAX_IMAGES, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_WAIT_MS,
                                DEFAULT_STOP_TIMEOUT)
    from ..apply.serve_auth import TOKEN_ENV
    srv = sub.add_parser("serve", help="score uploaded images over HTTP with a saved model (needs the serve extra)",
                         description="Load the model once and serve: GET / (a page to upload images and see "
                                     "their scores), GET /healthz, GET /v1/model (the model card, with the drift "
                                     "check), POST /v1/score (multipart field `files`, repeated; optional "
                                     "`threshold`): one entry per file with filename, score, threshold, is_novel "
                                     "and error, as `score` gives, and GET /metrics (Prometheus). With --memory, "
                                     "POST /v1/memory/confirm adds confirmed novelties and scoring uses them; it "
                                     "needs a token. Concurrent requests are scored together, in batches of up to "
                                     "--max-batch images. With a token (--token-file, or the environment variable "
                                     f"{TOKEN_ENV}; never on the command line) /v1/* and /metrics need the header "
                                     "'Authorization: Bearer TOKEN'; an address other machines can reach needs "
                                     "one. SIGTERM or Ctrl-C answers the requests in flight, then stops. A bad "
                                     "model folder fails here, before listening. Needs: pip install "
                                     "'noveltykit[serve]'.",
                         epilog="example:\n  noveltykit serve models/knn --port 8000\n"
                                "  curl -F files=@new/a.png -F files=@new/b.png http://127.0.0.1:8000/v1/score\n"
                                "  python -c \"import secrets; print(secrets.token_urlsafe(32))\" > token.txt; "
                                "chmod 600 token.txt\n"
                                "  noveltykit serve models/knn --host 0.0.0.0 --token-file token.txt --memory bank/\n"
                                "  curl -H \"Authorization: Bearer $(cat token.txt)\" -F files=@new/a.png "
                                "http://HOST:8000/v1/score")
    srv.add_argument("model", help="a saved model folder (fit, or bench --save-models)")
    srv.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1: this machine only; any other needs a token)")
    srv.add_argument("--port", type=int, default=8000, help="port to listen on")
    srv.add_argument("--token-file", metavar="FILE",
                     help=f"a file holding the bearer token (else the environment variable {TOKEN_ENV}; without "
                          "either, no token is asked and confirms are refused)")
    srv.add_argument("--allow-unauthenticated-writes", action="store_true",
                     help="without a token, let anyone who reaches the server confirm novelties into --memory")
    srv.add_argument("--memory", metavar="DIR", help="a novelty memory folder (made if new), kept across restarts")
    srv.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, metavar="IMAGES",
                     help=f"images in one model call, gathered from concurrent requests (default "
                          f"{DEFAULT_MAX_BATCH}; 1: one request at a time)")
    srv.add_argument("--max-wait-ms", type=float, default=DEFAULT_MAX_WAIT_MS, metavar="MS",
                     help=f"how long a model call may wait for requests already arriving to join it; a lone "
                          f"request never waits (default {DEFAULT_MAX_WAIT_MS:g})")
    srv.add_argument("--drift-window", type=int, default=DEFAULT_WINDOW, metavar="N",
                     help=f"the drift alarm compares the share of the last N images flagged with the threshold's "
                          f"rate (one-sided binomial test, alpha {DEFAULT_ALPHA:g}) (default {DEFAULT_WINDOW})")
    srv.add_argument("--stop-timeout", type=float, default=DEFAULT_STOP_TIMEOUT, metavar="SECONDS",
                     help=f"seconds a stopping server gives the requests in flight (default {DEFAULT_STOP_TIMEOUT:g})")
    srv.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
                     help=f"larger request bodies get 413 (default {DEFAULT_MAX_REQUEST_BYTES:,})")
    srv.add_argument("--max-images", type=int, default=DEFAULT_MAX_IMAGES,
                     help=f"more files in one request get 413 (default {DEFAULT_MAX_IMAGES})")
    srv.add_argument("--max-pixels", type=int,
                     help="a larger image is that file's error, not decoded (default: fit's and score's limit)")
    srv.set_defaults(func=run)


def run(args) -> int:
    # without the serve extra this is an ImportError whose message says what to install
    from ..apply.serve import serve
    pixels = {} if args.max_pixels is None else {"max_pixels": args.max_pixels}
    serve(args.model, host=args.host, port=args.port, memory_dir=args.memory,
          max_request_bytes=args.max_request_bytes, max_images=args.max_images, token_file=args.token_file,
          allow_unauthenticated_writes=args.allow_unauthenticated_writes, max_batch=args.max_batch,
          max_wait_ms=args.max_wait_ms, drift_window=args.drift_window, stop_timeout=args.stop_timeout, **pixels)
    return 0
