"""Worker heartbeats: each Celery worker's main process writes its WorkerHeartbeat row every
HEARTBEAT_SECONDS from a daemon thread started when the worker is ready, and deletes it when the
worker shuts down; `health.celery_health` reads the rows seen in the last HEARTBEAT_STALE_SECONDS.
(kill -9 leaves the row, which goes stale.) Connected in StatsConfig.ready, so every process that
runs Django and Celery's worker signals, and only a worker sends them."""
from __future__ import annotations

import logging
import os
import threading

from celery.signals import worker_ready, worker_shutdown
from django.db import connection
from django.utils import timezone

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 10
HEARTBEAT_STALE_SECONDS = 35  # three missed beats

_stop = threading.Event()


def heartbeat_write(*, name: str, queues: list[str], started_at) -> None:
    from celery.worker import state

    from engine.stats.models import WorkerHeartbeat

    WorkerHeartbeat.objects.update_or_create(name=name, defaults={
        "queues": sorted(queues), "pid": os.getpid(), "active_tasks": len(state.active_requests),
        "started_at": started_at, "seen_at": timezone.now()})


def _beat(name: str, queues: list[str], started_at) -> None:
    while not _stop.is_set():
        try:
            heartbeat_write(name=name, queues=queues, started_at=started_at)
        except Exception:  # noqa: BLE001 - the database away for a moment: the next beat tries again
            log.warning("worker heartbeat not written", exc_info=True)
        finally:
            connection.close()  # this thread's own connection: never left open between beats
        _stop.wait(HEARTBEAT_SECONDS)


@worker_ready.connect
def _on_worker_ready(sender=None, **kwargs):
    queues = [q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", []) or []]
    name = getattr(sender, "hostname", None) or f"worker-{os.getpid()}"
    _stop.clear()
    threading.Thread(target=_beat, args=(name, queues, timezone.now()), name="engine-heartbeat", daemon=True).start()


@worker_shutdown.connect
def _on_worker_shutdown(sender=None, **kwargs):
    _stop.set()
    from engine.stats.models import WorkerHeartbeat

    try:
        name = getattr(sender, "hostname", None)
        if name:
            WorkerHeartbeat.objects.filter(name=name).delete()
    except Exception:  # noqa: BLE001 - shutting down anyway; the row goes stale
        log.warning("worker heartbeat not removed", exc_info=True)
    finally:
        connection.close()
