"""A Celery worker alive but no longer taking tasks while its queue holds some exits with code 75
to be started again (engine/worker_watchdog.py); a worker that takes its tasks is left alone."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from engine.celery import app
from engine.worker_watchdog import STALLED_EXIT_CODE, StallClock
from tests.subprocesses import ROOT, broker_purge, celery_worker_start, child_process_env, process_group_kill

BROKER = os.environ.get("WATCHDOG_TEST_BROKER_URL", "redis://127.0.0.1:6379/13")
STALL_S = 3.0


def test_a_worker_is_stalled_only_after_messages_waited_the_whole_limit_while_it_took_none():
    clock = StallClock(stall_s=10)
    assert not clock.observe(now=0, waiting=3, busy=False, taken=5)
    assert not clock.observe(now=9, waiting=3, busy=False, taken=5)
    assert clock.observe(now=10, waiting=3, busy=False, taken=5)


@pytest.mark.parametrize("change", [
    {"taken": 6},  # it took a task: consuming, only slower than the queue fills
    {"busy": True},  # it runs one
    {"waiting": 0},  # nothing waits for it
    {"waiting": None},  # the broker did not answer: no verdict
])
def test_any_sign_of_life_starts_the_count_again(change):
    clock = StallClock(stall_s=10)
    clock.observe(now=0, waiting=3, busy=False, taken=5)
    assert not clock.observe(now=8, **({"waiting": 3, "busy": False, "taken": 5} | change))
    assert not clock.observe(now=12, waiting=3, busy=False, taken=change.get("taken", 5))  # counted from 12
    assert not clock.observe(now=21, waiting=3, busy=False, taken=change.get("taken", 5))
    assert clock.observe(now=22, waiting=3, busy=False, taken=change.get("taken", 5))


def queued(queue: str) -> int:
    with app.connection_for_read(BROKER) as conn:
        return conn.default_channel.client.llen(queue)


@pytest.mark.slow
def test_a_worker_that_stops_consuming_with_tasks_waiting_exits_to_be_restarted(tmp_path):
    queue = f"watchdog{os.getpid()}"
    hostname = f"watchdog{os.getpid()}@{socket.gethostname()}"
    log = tmp_path / "worker.log"
    worker = celery_worker_start(log, broker=BROKER, queue=queue, concurrency=1, name="watchdog", app="engine",
                                 env={"WORKER_STALL_S": str(STALL_S), "WORKER_STALL_CHECK_S": "0.3"})
    try:
        deadline = time.monotonic() + 120
        while " ready." not in log.read_text(errors="replace"):
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        # Healthy: what is sent is taken (an unknown task, which the worker discards), and an idle
        # worker with an empty queue stays up well past the limit.
        app.send_task("watchdog.unknown_task", queue=queue, connection=app.connection_for_write(BROKER))
        time.sleep(3 * STALL_S)
        assert worker.poll() is None, log.read_text()[-3000:]
        assert queued(queue) == 0

        # Alive but consuming nothing (as after the broker restart that broke its consumer), with
        # a task waiting: it exits, saying why.
        told = subprocess.run(
            [sys.executable, "-m", "celery", "-A", "engine", "control", "cancel_consumer", queue, "-d", hostname,
             "--timeout", "10"], cwd=ROOT, env=child_process_env(CELERY_BROKER_URL=BROKER), capture_output=True,
            text=True, timeout=120)
        assert "no longer consuming" in told.stdout, told.stdout + told.stderr
        app.send_task("watchdog.unknown_task", queue=queue, connection=app.connection_for_write(BROKER))
        stopped_consuming = time.monotonic()
        code = worker.wait(timeout=60)
        waited = time.monotonic() - stopped_consuming
        text = log.read_text(errors="replace")
        assert code == STALLED_EXIT_CODE, text[-3000:]
        assert "worker stalled: 1 message(s) have waited in " + queue in text
        assert STALL_S <= waited <= STALL_S + 10, waited
        assert queued(queue) == 1  # the task is still there for the worker started again
    finally:
        process_group_kill(worker)
        broker_purge(BROKER, queue)
