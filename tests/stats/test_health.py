"""The dashboard's worker check tells the truth on the filesystem broker `make run` uses (issue 15,
item 7): a real worker there answers no broadcast ping, and is seen by its heartbeat row."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from engine.stats import health
from engine.stats.models import WorkerHeartbeat
from tests.subprocesses import ROOT, child_process_env

pytestmark = [pytest.mark.slow, pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]


def wait_for(check, timeout: float, what: str, log) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}; the worker's log:\n" + log.read_text(errors="replace")[-3000:])
        time.sleep(0.3)


def test_a_worker_on_the_filesystem_broker_is_seen_and_its_leaving_too(tmp_path):
    log = tmp_path / "worker.log"
    var = tmp_path / "var"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "engine", "worker", "-Q", "default,model", "--concurrency", "1",
         "-l", "INFO", "-n", f"healthtest{os.getpid()}@%h"],
        cwd=ROOT, env=child_process_env(CELERY_BROKER_URL="filesystem://", VAR_DIR=str(var)),
        stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: WorkerHeartbeat.objects.filter(name__startswith="healthtest").exists(), 120,
                 "no heartbeat row", log)
        found = health.celery_health(use_cache=False)
        mine = [w for w in found["workers"] if w["name"].startswith("healthtest")]
        assert mine and mine[0]["queues"] == ["default", "model"], found
        assert not any("No Celery worker" in w for w in found["warnings"]), found
        first = WorkerHeartbeat.objects.get(name=mine[0]["name"]).seen_at
        wait_for(lambda: WorkerHeartbeat.objects.get(name=mine[0]["name"]).seen_at > first, 30,
                 "the heartbeat was not renewed", log)
        os.killpg(worker.pid, signal.SIGTERM)  # a warm shutdown, as make run's Ctrl-C
        worker.wait(timeout=60)
        assert not WorkerHeartbeat.objects.filter(name=mine[0]["name"]).exists()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)


def test_a_stale_heartbeat_is_a_worker_gone(db, monkeypatch):
    from datetime import timedelta

    from django.utils import timezone

    monkeypatch.setattr(health, "_inspect", lambda: ([], None))  # nobody answers a ping either
    WorkerHeartbeat.objects.create(name="celery@gone", queues=["default", "model"], pid=1,
                                   started_at=timezone.now(), seen_at=timezone.now() - timedelta(seconds=60))
    found = health.celery_health(use_cache=False)
    assert found["workers"] == [] and "No Celery worker has reported in the last 35 s" in found["warnings"][0]
    WorkerHeartbeat.objects.create(name="celery@fresh", queues=["default"], pid=2,
                                   started_at=timezone.now(), seen_at=timezone.now())
    found = health.celery_health(use_cache=False)
    assert [w["name"] for w in found["workers"]] == ["celery@fresh"]
    assert found["warnings"] == ["No worker consumes the 'model' queue."]
