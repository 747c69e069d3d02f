"""Load on a real `noveltykit serve`, on loopback: throughput and latency with and without
micro-batching, beside the model's bare batched speed (docs/use.md).

    OMP_NUM_THREADS=1 python benchmarks/serve_load.py MODEL_DIR --seconds 3 --out serve-load.json
    OMP_NUM_THREADS=1 python benchmarks/serve_load.py MODEL_DIR --soak 60

Load (the default): starts `noveltykit serve MODEL_DIR` as a subprocess on a free loopback port,
once with micro-batching (--max-batch 64, --max-wait-ms 5, serve's defaults) and once without
(--max-batch 1: one request a model call), and for each of 1, 8 and 32 concurrent clients
(threads, each with a keep-alive HTTP connection) sending 1 or 16 images a request, for
`--seconds` a cell: images/s answered and the p50 / p99 latency of a request. In the same run, the
model's `decision_function` on the same decoded images, in batches of 64, in this process: what
the model alone does, no HTTP, no decoding. The images: `--images N` synthetic noise PNGs at the
model's size and channels (or the image files under `--images-dir`). Prints a markdown table and,
with --out, writes it as JSON (and a .md beside it), with the CPU, the threads and this command.
The clients share the machine with the server: on few cores they take some of its time.

Soak (--soak SECONDS): one server with a memory folder (in a temporary folder, removed after) and a token
(from the environment), and `--clients` threads sending a mix for that long: good images,
unreadable uploads, oversized bodies (over the server's --max-request-bytes), a wrong token,
confirms of good images, reads of /v1/model and /metrics. Reports the answers by kind and
status, the number of 5xx, whether every confirmed image is in the bank (its `count` after a
SIGTERM, the graceful stop) and whether the server's unreadable-upload metric matches what was
sent (exit status 1 if any of those fail), and the server's RSS: after a warm-up, ten times during
the soak and at the end, with the bank's size on disk. Every confirm adds its images to the
memory, which the server holds as float32 vectors and their float64 copy, and, while a confirm
runs, the copy-on-write copy too (freed pages the allocator keeps): with confirms RSS grows with
the bank, by several times its size on disk. `--confirms 0` leaves them out; then RSS should stay
flat (a leak in scoring, errors or auth would show).

Loopback only: the server listens on 127.0.0.1, and every run is bounded by its seconds.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

HOST = "127.0.0.1"
START_TIMEOUT = 60  # seconds for a server to answer /healthz
REQUEST_TIMEOUT = 60


# --- the server ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    """`noveltykit serve MODEL ARGS` on a free loopback port, until `stop` (SIGTERM, graceful)."""

    def __init__(self, model: Path, *args: str, env: dict | None = None):
        self.port = free_port()
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "noveltykit.cli", "serve", str(model), "--host", HOST,
                                      "--port", str(self.port), *args], stdout=self.log, stderr=subprocess.STDOUT,
                                     text=True, env={**os.environ, **(env or {})})
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"serve did not start:\n{self.output()}") from None
                time.sleep(0.1)

    def rss_mib(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return kib / 1024

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(START_TIMEOUT)


# --- the clients -----------------------------------------------------------------------------------
def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
             f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n" for name, data in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Client:
    """One keep-alive HTTP connection (reopened after an error or a server's close)."""

    def __init__(self, port: int):
        self.port, self.conn = port, None

    def send(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
             ) -> tuple[int, bytes]:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.close()
                return r.status, data
            except (ConnectionError, http.client.HTTPException, OSError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def load_cell(port: int, uploads: list[bytes], clients: int, per_request: int, seconds: float) -> dict:
    """`clients` threads sending `per_request` images a request for `seconds`: images/s, latency."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    failures = [0] * clients
    start = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def work(c: int):
        client, rng = Client(port), random.Random(c)
        bodies = []
        for _ in range(8):  # a few bodies a thread, built before the clock starts
            picks = [uploads[rng.randrange(len(uploads))] for _ in range(per_request)]
            bodies.append(multipart([(f"{i}.png", b) for i, b in enumerate(picks)]))
        start.wait()
        i = 0
        while time.perf_counter() < stop_at[0]:
            body, ctype = bodies[i % len(bodies)]
            t0 = time.perf_counter()
            status, _ = client.send("POST", "/v1/score", body, {"Content-Type": ctype})
            if status == 200:
                latencies[c].append(time.perf_counter() - t0)
            else:
                failures[c] += 1
            i += 1
        client.close()

    threads = [threading.Thread(target=work, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join(seconds + REQUEST_TIMEOUT)
    elapsed = time.perf_counter() - t0
    done = sorted(x for per in latencies for x in per)
    if not done:
        return {"requests": 0, "failed": sum(failures), "images_per_s": 0.0, "p50_ms": None, "p99_ms": None}
    return {"requests": len(done), "failed": sum(failures),
            "images_per_s": round(len(done) * per_request / elapsed, 1),
            "p50_ms": round(1000 * statistics.median(done), 2),
            "p99_ms": round(1000 * done[min(len(done) - 1, int(0.99 * len(done)))], 2)}


# --- the images and the bare model -----------------------------------------------------------------
def make_uploads(model: Path, n: int, folder: str | None, seed: int = 0) -> list[bytes]:
    if folder:
        from noveltykit.data.folder import list_images
        files = list_images(Path(folder))[:n]
        if not files:
            raise SystemExit(f"no image files under {folder}")
        return [p.read_bytes() for p in files]
    from noveltykit.detectors import load
    spec = load(model).preprocessing_
    size, channels = int(spec.size), int(spec.channels)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(a[..., 0] if channels == 1 else a).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def bare_speed(model: Path, uploads: list[bytes], seconds: float, batch: int = 64) -> dict:
    """`decision_function` alone on the decoded uploads, in batches of `batch`, for about `seconds`."""
    from noveltykit.data.folder import DEFAULT_MAX_PIXELS, load_image_bytes
    from noveltykit.detectors import load
    detector = load(model)
    spec = detector.preprocessing_
    x = np.stack([spec.conform(load_image_bytes(b, spec.size, DEFAULT_MAX_PIXELS, "x")) for b in uploads])
    while len(x) < batch:
        x = np.concatenate([x, x])
    x = x[:batch]
    detector.decision_function(x)  # warm-up
    n, t0 = 0, time.perf_counter()
    while True:
        detector.decision_function(x)
        n += len(x)
        if time.perf_counter() - t0 >= seconds:
            break
    return {"images_per_s": round(n / (time.perf_counter() - t0), 1), "batch": batch, "detector": detector.name}


# --- the two modes ---------------------------------------------------------------------------------
def run_load(args) -> dict:
    model = Path(args.model)
    uploads = make_uploads(model, args.images, args.images_dir)
    rows = []
    for batching, extra in (("on", []), ("off", ["--max-batch", "1"])):
        server = Server(model, "--max-images", str(max(args.per_request)), *extra)
        try:
            for clients in args.concurrency:
                for per_request in args.per_request:
                    cell = load_cell(server.port, uploads, clients, per_request, args.seconds)
                    rows.append({"batching": batching, "clients": clients, "images_a_request": per_request, **cell})
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        finally:
            server.stop()
    bare = bare_speed(model, uploads, args.seconds)
    return {"rows": rows, "bare": bare}


def run_soak(args) -> dict:
    model = Path(args.model)
    uploads = make_uploads(model, args.images, args.images_dir)
    token = "soak-" + uuid.uuid4().hex
    max_bytes = 1_000_000
    oversized = os.urandom(max_bytes + 1000)
    work = Path(tempfile.mkdtemp(prefix="serve-soak-"))
    server = Server(model, "--memory", str(work / "bank"), "--max-request-bytes", str(max_bytes),
                    env={"NOVELTYKIT_SERVE_TOKEN": token})
    good = {"Authorization": f"Bearer {token}"}
    kinds = [("score", 50), ("unreadable", 10), ("oversized", 5), ("wrong_token", 10), ("confirm", args.confirms),
             ("model", 10), ("metrics", 5)]
    counts: dict[tuple[str, int], int] = {}
    sent = {"unreadable": 0, "confirmed": 0}
    lock = threading.Lock()
    try:
        warm = Client(server.port)  # warm-up: the first requests load lazily imported code
        for _ in range(20):
            body, ctype = multipart([("w.png", uploads[0])])
            warm.send("POST", "/v1/score", body, {**good, "Content-Type": ctype})
        warm.close()
        rss_start = server.rss_mib()
        stop_at = time.monotonic() + args.soak

        def work_thread(c: int):
            client, rng = Client(server.port), random.Random(100 + c)
            names, weights = zip(*kinds)
            while time.monotonic() < stop_at:
                kind = rng.choices(names, weights)[0]
                headers, path, method, body = dict(good), "/v1/score", "POST", None
                if kind in ("score", "confirm", "wrong_token"):
                    n = rng.randint(1, 4)
                    body, ctype = multipart([(f"{i}.png", uploads[rng.randrange(len(uploads))]) for i in range(n)])
                    headers["Content-Type"] = ctype
                    if kind == "confirm":
                        path = "/v1/memory/confirm"
                    if kind == "wrong_token":
                        headers["Authorization"] = "Bearer not-" + token
                elif kind == "unreadable":
                    body, ctype = multipart([("ok.png", uploads[0]), ("bad.png", os.urandom(200))])
                    headers["Content-Type"] = ctype
                elif kind == "oversized":
                    body, ctype = multipart([("big.png", oversized)])
                    headers["Content-Type"] = ctype
                else:
                    method, path = "GET", "/v1/model" if kind == "model" else "/metrics"
                try:
                    status, _ = client.send(method, path, body, headers)
                except OSError:  # e.g. the server closed an oversized upload while it was being sent
                    status = 0
                with lock:
                    counts[(kind, status)] = counts.get((kind, status), 0) + 1
                    if kind == "confirm" and status == 200:
                        sent["confirmed"] += n
                    if kind == "unreadable" and status == 200:
                        sent["unreadable"] += 1
            client.close()

        threads = [threading.Thread(target=work_thread, args=(c,), daemon=True) for c in range(args.clients)]
        for t in threads:
            t.start()
        samples = []  # the server's RSS, ten times over the soak: a leak keeps climbing, a warm-up levels off
        for i in range(1, 11):
            time.sleep(max(0.0, stop_at - args.soak * (1 - i / 10) - time.monotonic()))
            samples.append(round(server.rss_mib(), 1))
        for t in threads:
            t.join(args.soak + REQUEST_TIMEOUT)
        rss_end = server.rss_mib()
        client = Client(server.port)
        status, text = client.send("GET", "/metrics", None, good)
        client.close()
        unreadable_metric = next((float(line.split()[-1]) for line in text.decode().splitlines()
                                  if line.startswith("noveltykit_unreadable_uploads_total")), None)
    finally:
        exit_status = server.stop()
    bank_json, bank_file = work / "bank" / "memory.json", work / "bank" / "memory.safetensors"
    bank = json.loads(bank_json.read_text()) if bank_json.exists() else {"count": 0}
    bank_mib = bank_file.stat().st_size / 2**20 if bank_file.exists() else 0.0
    output = server.output()
    shutil.rmtree(work, ignore_errors=True)
    by_status: dict[str, dict[str, int]] = {}
    for (kind, status), n in sorted(counts.items()):
        by_status.setdefault(kind, {})[str(status)] = n
    five_xx = sum(n for (kind, status), n in counts.items() if status >= 500)
    expected = {"score": {200}, "unreadable": {200}, "oversized": {413, 0}, "wrong_token": {401}, "confirm": {200},
                "model": {200}, "metrics": {200}}
    unexpected = {f"{k} {s}": n for (k, s), n in counts.items() if s not in expected[k]}
    result = {"seconds": args.soak, "clients": args.clients, "requests": sum(counts.values()),
              "rss_mib_start": round(rss_start, 1), "rss_mib_end": round(rss_end, 1),
              "rss_growth_mib": round(rss_end - rss_start, 1), "rss_mib_samples": samples,
              "rss_growth_second_half_mib": round(samples[-1] - samples[4], 1), "by_kind_and_status": by_status,
              "5xx": five_xx,
              "unexpected": unexpected, "confirmed_images": sent["confirmed"], "bank_count": bank.get("count"),
              "bank_file_mib": round(bank_mib, 1),
              "every_confirm_in_bank": bank.get("count") == sent["confirmed"],
              "unreadable_sent": sent["unreadable"], "unreadable_metric": unreadable_metric,
              "server_exit_status": exit_status,
              "stopped_cleanly": "noveltykit: stopped; queue drained" in output}
    result["ok"] = (five_xx == 0 and not unexpected and result["every_confirm_in_bank"]
                    and unreadable_metric == sent["unreadable"] and result["stopped_cleanly"])
    return result


def table(result: dict, meta: dict) -> str:
    lines = [f"`{meta['command']}` on {meta['cpu']} ({meta['threads']} thread(s)); model {meta['model']} "
             f"({result['bare']['detector']}); images/s answered, latency of a request",
             "",
             "| micro-batching | clients | images a request | images/s | p50 ms | p99 ms | requests |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['batching']} | {r['clients']} | {r['images_a_request']} | {r['images_per_s']} | "
                     f"{r['p50_ms']} | {r['p99_ms']} | {r['requests']} |")
    lines.append(f"| bare `decision_function`, batches of {result['bare']['batch']} | | | "
                 f"{result['bare']['images_per_s']} | | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a saved model folder")
    ap.add_argument("--seconds", type=float, default=3.0, help="seconds a cell (load) (default 3)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--per-request", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--images", type=int, default=64, help="distinct synthetic images to send (default 64)")
    ap.add_argument("--images-dir", help="send these image files instead")
    ap.add_argument("--soak", type=float, metavar="SECONDS", help="the soak test instead, for this long")
    ap.add_argument("--clients", type=int, default=4, help="threads of the soak (default 4)")
    ap.add_argument("--confirms", type=float, default=10,
                    help="the soak's weight of confirms in the mix, of 100 for the rest (default 10)")
    ap.add_argument("--out", help="write the result here as JSON (and a .md table beside it for load)")
    args = ap.parse_args(argv)
    from noveltykit.experiments.provenance import cpu_model
    meta = {"command": "python benchmarks/serve_load.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
            "cpu": cpu_model(), "threads": os.environ.get("OMP_NUM_THREADS", "default"),
            "model": Path(args.model).name, "at": time.strftime("%Y-%m-%d %H:%M:%S")}
    if args.soak is not None:
        result = {**meta, "soak": run_soak(args)}
        print(json.dumps(result, indent=2))
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        return 0 if result["soak"]["ok"] else 1
    result = run_load(args)
    text = table(result, meta)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps({**meta, **result}, indent=2) + "\n")
        Path(args.out).with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
