"""A Celery worker that is alive but no longer takes tasks exits, so that its supervisor starts a
fresh one.

Celery's consumer can come out of a broker restart without consuming: with celery and kombu
5.7 on Redis, an ack sent on the connection the consumer had closed raised AttributeError
(kombu's `_connparams` reading the closed connection's `client`), and the worker went on running,
idle, while its queue filled. Nothing that watches the process sees it: the process lives, its
heartbeat row stays fresh, and the lost-work sweep sends what it held again to a queue that
nobody reads.

So the worker's main process looks, every `WORKER_STALL_CHECK_S`, at its queues on a broker
connection of its own: when messages have waited there for `WORKER_STALL_S` while the worker ran
nothing, held nothing in reserve and took no task, it logs why and exits with
`STALLED_EXIT_CODE`; compose's restart policy (`restart: unless-stopped`), systemd, `make run`'s
loop or the tests' topology start it again, and what it held comes back through the sweep
(engine.lost_work). Looking needs the broker: while it is unreachable the worker is not judged.
A worker told to stop consuming a queue (`celery control cancel_consumer`) is stalled by this
rule too, and restarts consuming its command line's queues. `WORKER_STALL_S = 0` turns it off.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

from celery.signals import worker_ready, worker_shutdown
from celery.worker import state
from django.conf import settings

log = logging.getLogger(__name__)
STALLED_EXIT_CODE = 75  # EX_TEMPFAIL: a restart is what it needs

_stop = threading.Event()


@dataclass
class StallClock:
    """How long the worker has been stalled, fed one observation at a time (no I/O, no clock of
    its own, so that the rule is tested on its own)."""

    stall_s: float
    taken: int | None = None  # tasks the worker had taken at the last observation
    since: float | None = None  # when the present stall began

    def observe(self, *, now: float, waiting: int | None, busy: bool, taken: int) -> bool:
        """One look: `waiting` messages in the worker's queues (None: the broker did not answer),
        `busy` (it runs or holds a task), `taken` (tasks taken since it started). True when it has
        been stalled for `stall_s`."""
        progressed, self.taken = self.taken is not None and taken != self.taken, taken
        if busy or progressed or not waiting:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.stall_s


def queued_messages(app, queues: list[str]) -> int | None:
    """Messages waiting in `queues`, counted on a connection of our own; None when the broker
    does not answer."""
    try:
        with app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
            channel = conn.default_channel
            total = 0
            for name in queues:
                try:
                    total += channel.queue_declare(queue=name, passive=True).message_count
                except conn.channel_errors:  # the queue does not exist (yet): nothing waits in it
                    channel = conn.channel()
            return total
    except Exception:  # noqa: BLE001 - the broker away: no verdict this time
        log.debug("watchdog: the broker did not answer", exc_info=True)
        return None


def _watch(app, queues: list[str], stall_s: float, check_s: float) -> None:
    clock = StallClock(stall_s)
    while not _stop.wait(check_s):
        waiting = queued_messages(app, queues)
        busy = bool(len(state.active_requests) or len(state.reserved_requests))
        if clock.observe(now=time.monotonic(), waiting=waiting, busy=busy, taken=state.all_total_count[0]):
            log.critical("worker stalled: %d message(s) have waited in %s for %.0f s while this worker took "
                         "nothing; exiting (code %d) so that it is started again",
                         waiting, ",".join(queues), time.monotonic() - clock.since, STALLED_EXIT_CODE)
            logging.shutdown()
            os._exit(STALLED_EXIT_CODE)  # Celery's own shutdown waits on the consumer that is broken


@worker_ready.connect
def _on_worker_ready(sender=None, **kwargs):
    stall_s = settings.WORKER_STALL_S
    queues = [q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", []) or []]
    if stall_s <= 0 or not queues:
        return
    check_s = settings.WORKER_STALL_CHECK_S or min(15.0, stall_s / 4)
    _stop.clear()
    threading.Thread(target=_watch, args=(sender.app, queues, stall_s, check_s), name="engine-watchdog",
                     daemon=True).start()


@worker_shutdown.connect
def _on_worker_shutdown(sender=None, **kwargs):
    _stop.set()
