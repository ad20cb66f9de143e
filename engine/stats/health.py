"""Celery worker and queue health: the workers' heartbeat rows (engine.stats.heartbeat), and
the queues' lengths from the broker.

Workers are known by the rows they write every few seconds, not by a broadcast ping: `make
run`'s filesystem broker answers no broadcast, so a ping said "no worker" while one was working.
Only when no row is fresh does the check also try Celery's inspect (a worker of an older
version); a broadcast waits its whole timeout when nobody answers, so the answer is cached for
HEALTH_CACHE_SECONDS.
"""
from __future__ import annotations

import time
from datetime import timedelta

from django.core.cache import cache
from django.utils import timezone

from engine.celery import app
from engine.files import without_server_paths
from engine.stats.heartbeat import HEARTBEAT_STALE_SECONDS

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
    workers, error = _heartbeats(), None
    if not workers:
        workers, error = _inspect()
    lengths = _queue_lengths(app)
    served = {q for w in workers for q in w["queues"]}
    warnings = []
    if not workers:
        warnings.append(f"No Celery worker has reported in the last {HEARTBEAT_STALE_SECONDS} s: generation, imports "
                        "and the rollup refresh are not running. Start one with "
                        "`celery -A engine worker -B -Q default,model`.")
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


def _heartbeats() -> list[dict]:
    from engine.stats.models import WorkerHeartbeat

    fresh = WorkerHeartbeat.objects.filter(seen_at__gte=timezone.now() - timedelta(seconds=HEARTBEAT_STALE_SECONDS))
    return [{"name": w.name, "active_tasks": w.active_tasks, "queues": list(w.queues),
             "seen_s_ago": round((timezone.now() - w.seen_at).total_seconds())}
            for w in fresh.order_by("name")]


def _inspect() -> tuple[list[dict], str | None]:
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
    return workers, error
