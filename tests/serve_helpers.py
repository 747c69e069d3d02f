"""What the `serve` tests share: a real uvicorn server on a free loopback port (in a thread, or
`noveltykit serve` in a process of its own), multipart uploads and requests over plain HTTP, test
images, /metrics parsed, and headless Chromium driven through playwright."""
from __future__ import annotations

import json
import os
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

from noveltykit.apply.fit import fit_folder

from test_apply import stripes, write

HOST = "127.0.0.1"
TIMEOUT = 30  # seconds, for every request and wait here
TOKEN = "test-token-0123456789abcdef"  # long enough for serve's check


def fitted_knn(tmp_path_factory, name: str, n: int = 20, size: int = 32):
    """A `knn:k=3` model folder fitted on `n` generated normal images of `size` px."""
    root = tmp_path_factory.mktemp(name)
    write(root / "normal", n, True, size, 0)
    fit_folder("knn:k=3", root / "normal", root / "model", progress=False)
    return root / "model"


@contextmanager
def running(app):
    """`app` served by uvicorn on a free loopback port, in a thread; yields the base URL. Its
    lifespan runs, so stopping it drains the app's model thread as `noveltykit serve` does."""
    import uvicorn
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))  # the OS picks a free port; uvicorn serves on this very socket
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
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


def free_port() -> int:
    with socket.socket() as s:  # a free port, for a child process to bind
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextmanager
def serving_process(*args: str, env: dict | None = None, port: int | None = None):
    """`noveltykit serve ARGS --port P` in a process of its own; yields (url, proc) once /healthz
    answers. At the end the process is stopped (SIGTERM) unless it has exited, and its output
    (kept in a file, so a chatty server never blocks on a full pipe) is left in proc.output."""
    import tempfile
    port = port or free_port()
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "noveltykit.cli", "serve", *args, "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})})
    url = f"http://{HOST}:{port}"
    try:
        for _ in range(int(TIMEOUT / 0.1)):  # bounded: up to TIMEOUT seconds for start-up
            try:
                if request(f"{url}/healthz")[0] == 200:
                    break
            except OSError:
                if proc.poll() is not None:
                    break
                time.sleep(0.1)
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"serve exited: {log.read()}")
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(TIMEOUT)
        log.seek(0)
        proc.output = log.read()
        log.close()


def png(array: np.ndarray) -> bytes:
    buf = BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def images(n: int, vertical: bool, seed: int, size: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [stripes(vertical, size, rng) for _ in range(n)]


def multipart(files: list[tuple[str, bytes]], fields: dict | None = None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in (fields or {}).items()]
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def call(url: str, files: list[tuple[str, bytes]] | None = None, fields: dict | None = None,
         token: str | None = None, headers: dict | None = None) -> tuple[int, dict, dict | str]:
    """(status, headers, body: JSON as a dict, else text); POST when there are files or fields.
    `token`: sent as `Authorization: Bearer <token>`."""
    data, headers = None, dict(headers or {})
    if files is not None or fields is not None:
        data, ctype = multipart(files or [], fields)
        headers["Content-Type"] = ctype
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:
            status, body, got = r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        status, body, got = e.code, e.read(), e.headers
    ctype = got.get("Content-Type", "")
    parsed = json.loads(body) if ctype.startswith("application/json") else body.decode()
    return status, {k.lower(): v for k, v in got.items()}, parsed


def request(url: str, files: list[tuple[str, bytes]] | None = None, fields: dict | None = None,
            token: str | None = None) -> tuple[int, dict | str]:
    status, _, body = call(url, files, fields, token)
    return status, body


def metric_samples(text: str) -> dict[tuple[str, tuple], float]:
    """/metrics parsed by prometheus_client's own parser: {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def metric(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, tuple(sorted((k, str(v)) for k, v in labels.items()))))


@contextmanager
def chromium_page(tmp_path):
    """A page of headless Debian Chromium driven by playwright; skips where either is missing."""
    import shutil
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium; make test-browser)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; it drives the system's chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 420})
            page.set_default_timeout(TIMEOUT * 1000)
            yield page
        finally:
            browser.close()
