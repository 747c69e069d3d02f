"""noveltykit serve: score uploaded images over HTTP (apply.serve.serve)."""
from __future__ import annotations


def add_parser(sub) -> None:
    from ..apply.limits import DEFAULT_MAX_IMAGES, DEFAULT_MAX_REQUEST_BYTES
    srv = sub.add_parser("serve", help="score uploaded images over HTTP with a saved model (needs the serve extra)",
                         description="Load the model once and serve: GET / (a page to upload images and see "
                                     "their scores), GET /healthz, GET /v1/model (the model card), POST /v1/score "
                                     "(multipart field `files`, repeated; optional `threshold`): one entry per "
                                     "file with filename, score, threshold, is_novel and error, as `score` "
                                     "gives. With --memory, POST /v1/memory/confirm adds confirmed novelties "
                                     "and scoring uses them. A bad model folder fails here, before listening. "
                                     "Needs: pip install 'noveltykit[serve]'.",
                         epilog="example:\n  noveltykit serve models/knn --port 8000\n"
                                "  curl -F files=@new/a.png -F files=@new/b.png http://127.0.0.1:8000/v1/score")
    srv.add_argument("model", help="a saved model folder (fit, or bench --save-models)")
    srv.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, default=8000, help="port to listen on")
    srv.add_argument("--memory", metavar="DIR", help="a novelty memory folder (made if new), kept across restarts")
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
          max_request_bytes=args.max_request_bytes, max_images=args.max_images, **pixels)
    return 0
