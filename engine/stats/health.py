"""Celery worker and queue health, from Celery's own inspect (broadcast ping) and the broker.

A broadcast waits for its whole timeout when no worker answers, so the answer is cached for
HEALTH_CACHE_SECONDS: a dashboard page costs at most one short wait per interval.
"""
from __future__ import annotations

import time

from django.core.cache import cache
from django.utils import timezone

from engine.celery import app
from engine.files import without_server_paths

INSPECT_TIMEOUT_S = 0.5
HEALTH_CACHE_SECONDS = 15
QUEUES = ("default", "model")
_KEY = "stats:celery-health:v1"


def _queue_lengths(app) -> dict:
    out = {}
    try:
        with app.connection_for_read() as conn:
            channel = conn.default_channel
            for name in QUEUES:
                try:
                    out[name] = int(channel.queue_declare(queue=name, passive=True).message_count)
                except Exception:  # noqa: BLE001 - a missing queue or a transport without counts
                    size = getattr(channel, "_size", None)
                    try:
                        out[name] = int(size(name)) if size else None
                    except Exception:  # noqa: BLE001
                        out[name] = None
    except Exception as exc:  # noqa: BLE001 - the broker itself is down
        return {"error": without_server_paths(f"broker unreachable: {exc}")}  # the filesystem broker names folders
    return out


def celery_health(*, use_cache: bool = True) -> dict:
    if use_cache:
        cached = cache.get(_KEY)
        if cached is not None:
            return cached
    t0 = time.perf_counter()
    workers, error = [], None
    try:
        inspect = app.control.inspect(timeout=INSPECT_TIMEOUT_S)
        pongs = inspect.ping() or {}
        active = (inspect.active() or {}) if pongs else {}
        queues = (inspect.active_queues() or {}) if pongs else {}
        for name in sorted(pongs):
            workers.append({"name": name, "active_tasks": len(active.get(name, []) or []),
                            "queues": sorted(q.get("name") for q in queues.get(name, []) or [])})
    except Exception as exc:  # noqa: BLE001 - transports without broadcast, broker down
        error = without_server_paths(str(exc)) or exc.__class__.__name__
    lengths = _queue_lengths(app)
    served = {q for w in workers for q in w["queues"]}
    warnings = []
    if not workers:
        warnings.append("No Celery worker answered: generation and the rollup refresh are not running. "
                        "Start one with `celery -A engine worker -B -Q default,model`.")
    else:
        for q in QUEUES:
            if q not in served:
                warnings.append(f"No worker consumes the '{q}' queue.")
    result = {
        "checked_at": timezone.now(), "inspect_ms": round((time.perf_counter() - t0) * 1000),
        "workers": workers, "queues": lengths, "ok": bool(workers) and not warnings,
        "warnings": warnings, "error": error,
    }
    cache.set(_KEY, result, HEALTH_CACHE_SECONDS)
    return result
