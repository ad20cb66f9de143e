"""A real Celery worker for browser tests whose pages start jobs (the console's imports): the
live server's tasks go to the test's Redis broker, where the worker, a child process on the
test's database, media and upload folders, takes them."""
from __future__ import annotations

import os
import time

import pytest

from engine.celery import app
from engine.ingest import jobs, uploads
from engine.ingest.tasks import ingest_batch, ingest_prepare
from tests.subprocesses import broker_purge, celery_worker_start, process_group_kill

BROKER = os.environ.get("INGEST_TEST_BROKER_URL", "redis://127.0.0.1:6379/7")


@pytest.fixture
def ingest_worker(monkeypatch, tmp_path):
    """Imports started by the pages run on a real worker (queue default)."""
    def prepare(job_id):
        with app.connection_for_write(BROKER) as conn:
            ingest_prepare.apply_async(args=[job_id], queue="default", connection=conn)

    def batches(*, batch_ids):
        with app.connection_for_write(BROKER) as conn:
            for pk in batch_ids:
                ingest_batch.apply_async(args=[pk], queue="default", connection=conn)

    broker_purge(BROKER, "default")
    monkeypatch.setattr(uploads, "_prepare_enqueue", prepare)
    monkeypatch.setattr(jobs, "ingest_batches_enqueue", batches)
    log = tmp_path / "worker.log"
    worker = celery_worker_start(log, broker=BROKER, queue="default", concurrency=1, name="consoletest")
    deadline = time.monotonic() + 120
    while "ready." not in (log.read_text(errors="replace") if log.exists() else ""):
        if worker.poll() is not None or time.monotonic() > deadline:
            pytest.fail("the test's Celery worker did not start:\n" + log.read_text(errors="replace")[-3000:])
        time.sleep(0.3)
    yield worker
    process_group_kill(worker)
    broker_purge(BROKER, "default")
