"""Work a worker took and then lost (kill -9, out of memory, a machine gone), found and sent again.

The broker alone recovers it late: Redis gives an unacknowledged task back only after its
visibility timeout, one value for every queue, which must exceed the longest task (a snapshot
build may take hours) or long tasks would be delivered twice while they run. So every row worked
on by one task (`engine.models.WorkerHeld`: generation job items, ingest batches, snapshot
builds, training runs) says when a worker had it: `heartbeat_at` is empty while its task waits
in the broker, set when a worker starts it (`work_taken`) and, for long work, refreshed every
`TASK_HEARTBEAT_S` while it runs (`heartbeat`).

A beat task per app calls `lost_requeue` every `LOST_WORK_SWEEP_S`: a row still unfinished whose
worker has been silent longer than its task can be (`silent_limit_s`: its hard time limit, three
heartbeats for long work, nothing for work that holds the row's lock throughout, plus the longest
retry countdown, plus `LOST_WORK_MARGIN_S`) was lost with its worker.
Its task is sent again and its `heartbeat_at` emptied, in one conditional update, so each loss
is requeued once: a task merely queued behind a long backlog has no heartbeat and is never sent
twice. The tasks are idempotent (unique constraints), so the original delivery coming back later
changes nothing. After `LOST_WORK_MAX_REQUEUES` losses the row fails with a reason: work that
kills its worker (out of memory) is not retried forever.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

log = logging.getLogger(__name__)


def work_taken(rows: QuerySet) -> int:
    """A worker starts the task of these rows now (call it first thing in the task)."""
    return rows.update(heartbeat_at=timezone.now())


@contextmanager
def heartbeat(rows: QuerySet, *, every_s: float | None = None) -> Iterator[None]:
    """Refresh the rows' `heartbeat_at` every `every_s` (TASK_HEARTBEAT_S) from a thread while
    the block runs: long work (a snapshot build, a training run) says it is alive. The rows must
    not be locked by the block's own transaction (the beat would wait on it)."""
    every = settings.TASK_HEARTBEAT_S if every_s is None else every_s
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(every):
                try:
                    rows.update(heartbeat_at=timezone.now())
                except DatabaseError as exc:  # the database restarting: the next beat tries again
                    log.warning("heartbeat of %s failed: %s", rows.model.__name__, exc)
                    connections.close_all()
        finally:
            connections.close_all()  # this thread's own connections

    thread = threading.Thread(target=beat, name="heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


TIME_LIMIT, HEARTBEAT, ROW_LOCK = "time_limit", "heartbeat", "row_lock"


def silent_limit_s(task, *, alive_by: str) -> float:
    """How long a live worker can leave a row of `task` without a heartbeat. While it runs: up to
    its hard time limit (TIME_LIMIT), three missed beats (HEARTBEAT: work that beats), or no time
    at all (ROW_LOCK: work that holds the row's lock from its first statement to its commit; the
    sweep skips locked rows, and a killed worker's lock goes with its connection). Then its
    longest retry countdown (a retried task waits in the broker with its last heartbeat), plus
    the margin."""
    running = {TIME_LIMIT: float(task.time_limit), HEARTBEAT: 3 * settings.TASK_HEARTBEAT_S, ROW_LOCK: 0.0}[alive_by]
    return running + longest_retry_countdown_s(task) + settings.LOST_WORK_MARGIN_S


def longest_retry_countdown_s(task) -> float:
    """The longest wait before a retry of `task` (engine.celery.row_task: exponential backoff from
    `retry_backoff` seconds, doubling per retry up to `retry_backoff_max`, jittered below it)."""
    if not getattr(task, "autoretry_for", ()) or not task.max_retries:
        return 0.0
    return float(min(task.retry_backoff_max, task.retry_backoff * 2 ** (task.max_retries - 1)))


@dataclass
class Requeued:
    """What one sweep of one kind of row did: the ids sent again, the ids failed for good."""
    requeued: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)


def lost_requeue(*, unfinished: QuerySet, silent_s: float, requeue: Callable[[list[int]], None],
                 fail: Callable[[int, str], object], what: str) -> Requeued:
    """Send again the task of every row of `unfinished` (the rows whose work is not finished)
    that a worker took and then left silent for more than `silent_s` seconds; fail, with a
    reason, those lost LOST_WORK_MAX_REQUEUES times already. Rows locked by a running
    transaction are alive and skipped. `requeue(ids)` sends the tasks inside the sweep's
    transaction: if it raises, nothing changes."""
    cutoff = timezone.now() - timedelta(seconds=silent_s)
    limit = settings.LOST_WORK_MAX_REQUEUES
    done = Requeued()
    with transaction.atomic():
        lost = list(unfinished.filter(heartbeat_at__lt=cutoff).select_for_update(skip_locked=True)
                    .values_list("pk", "requeues"))
        done.requeued = [pk for pk, n in lost if n < limit]
        done.failed = [pk for pk, n in lost if n >= limit]
        if done.requeued:
            unfinished.model.objects.filter(pk__in=done.requeued).update(heartbeat_at=None, requeues=F("requeues") + 1)
            # Sent before the commit: a broker that refuses the send rolls the sweep back, and the
            # rows keep their heartbeat for the next sweep (sent after it, they would wait with an
            # empty heartbeat for a task that does not exist). A task delivered before the commit
            # waits on the rows' locks; sent twice if the commit fails, it is idempotent.
            requeue(list(done.requeued))
    for pk in done.failed:
        fail(pk, f"its worker was lost {limit + 1} times while working on it (killed, or out of memory?); "
                 f"it was not sent again")
    if lost:
        log.warning("lost work: %s %s sent again, %s failed (worker silent over %.0f s)",
                    what, done.requeued, done.failed, silent_s)
    return done
