"""Request latency for Prometheus, labelled by route (the URL pattern's name, never the raw path,
so that ids in paths do not explode the label set)."""
from __future__ import annotations

import time

from prometheus_client import Histogram

REQUEST_LATENCY = Histogram(
    "engine_http_request_duration_seconds",
    "Time to answer an HTTP request, by route, method and status class.",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class RequestLatencyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        t0 = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = (match.url_name or match.route or "unnamed") if match else "unmatched"
        if route != "metrics":
            REQUEST_LATENCY.labels(route, request.method, f"{response.status_code // 100}xx").observe(
                time.perf_counter() - t0)
        return response
