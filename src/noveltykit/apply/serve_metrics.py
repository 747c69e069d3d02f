"""`serve`'s /metrics: Prometheus text format, from a registry of the app's own (`prometheus-client`).

    noveltykit_requests_total{endpoint, status}     requests answered (401s and 413s included)
    noveltykit_requests_in_progress{endpoint}        requests being answered now
    noveltykit_request_seconds{endpoint}             latency histogram, from the request to its answer
    noveltykit_images_scored_total                   images given a score
    noveltykit_images_novel_total                    of those, flagged novel (by the threshold each request used)
    noveltykit_unreadable_uploads_total              uploads that were not a readable image (score or confirm)
    noveltykit_batch_images                          histogram of the images in each model call
    noveltykit_batch_requests                        histogram of the requests in each model call
    noveltykit_drift_window_images / _flagged / _flagged_rate / _expected_rate / _p_value / _alarm
                                                     the drift check of the last images (`drift.py`),
                                                     read when scraped; no expected rate or p-value
                                                     when there is none yet

`endpoint` is the route (/v1/score, ...), or "other" for any path the app does not serve, so a
scan of random paths cannot grow the series without bound. Each app has its own
CollectorRegistry, so several apps in one process (tests) do not collide.
"""
from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from .drift import DriftMonitor

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _powers_of_two(top: int) -> tuple[float, ...]:
    out, b = [], 1
    while b < top:
        out.append(float(b))
        b *= 2
    return (*out, float(top))


class _DriftCollector:
    def __init__(self, drift: DriftMonitor):
        self.drift = drift

    def collect(self):
        check = self.drift.check()
        values = {"window_images": (check.images, "images in the drift window (the last --drift-window scored)"),
                  "window_flagged": (check.flagged, "of those, above the model's threshold"),
                  "flagged_rate": (check.flagged_rate, "the window's share flagged"),
                  "expected_rate": (check.expected_rate, f"the share the threshold flags on normal images "
                                                         f"({check.expected_from})"),
                  "p_value": (check.p_value, "one-sided binomial p-value of the window's flagged count"),
                  "alarm": (float(check.alarm), f"1 when p_value < alpha = {check.alpha:g}")}
        for name, (value, text) in values.items():
            if value is not None:
                yield GaugeMetricFamily(f"noveltykit_drift_{name}", text, value=float(value))


class ServeMetrics:
    """The app's metrics (module docstring); `CountRequests` counts every request into them."""

    def __init__(self, endpoints: set[str], drift: DriftMonitor, max_batch: int):
        self.endpoints = set(endpoints)
        self.registry = r = CollectorRegistry()
        self.requests = Counter("noveltykit_requests", "HTTP requests answered, by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.in_progress = Gauge("noveltykit_requests_in_progress", "HTTP requests being answered now",
                                 ["endpoint"], registry=r)
        self.latency = Histogram("noveltykit_request_seconds", "seconds from a request to its answer, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.images_scored = Counter("noveltykit_images_scored", "images given a score", registry=r)
        self.images_novel = Counter("noveltykit_images_novel", "images flagged novel (by the threshold each "
                                                               "request used)", registry=r)
        self.unreadable = Counter("noveltykit_unreadable_uploads", "uploads that were not a readable image",
                                  registry=r)
        self.batch_images = Histogram("noveltykit_batch_images", "images in each model call",
                                      buckets=_powers_of_two(max(1, int(max_batch))), registry=r)
        self.batch_requests = Histogram("noveltykit_batch_requests", "requests in each model call",
                                        buckets=_powers_of_two(max(1, int(max_batch))), registry=r)
        r.register(_DriftCollector(drift))

    def batch(self, images: int, requests: int) -> None:
        self.batch_images.observe(images)
        self.batch_requests.observe(requests)

    def scored(self, n_scored: int, n_novel: int, n_unreadable: int) -> None:
        self.images_scored.inc(n_scored)
        self.images_novel.inc(n_novel)
        self.unreadable.inc(n_unreadable)

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def endpoint(self, path: str) -> str:
        path = path.rstrip("/") or "/"
        return path if path in self.endpoints else "other"


class CountRequests:
    """Pure ASGI middleware: each request counted by endpoint and status, and timed (`metrics`)."""

    def __init__(self, app, metrics: ServeMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        m = self.metrics
        endpoint = m.endpoint(scope.get("path", ""))
        status = 500  # unless the app answers

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        m.in_progress.labels(endpoint).inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            m.in_progress.labels(endpoint).dec()
            m.latency.labels(endpoint).observe(time.perf_counter() - start)
            m.requests.labels(endpoint, str(status)).inc()
