"""Work lost with a killed worker comes back through beat's sweep (engine.lost_work), not after
the broker's visibility timeout: only what a worker took and then went silent on, once per loss,
never what merely waits in a backlog; after LOST_WORK_MAX_REQUEUES losses it fails with a reason."""
from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from annotation.models import Item, ItemState
from engine import lost_work
from engine.exports import services as export_services
from engine.exports import tasks as export_tasks
from engine.exports.models import Snapshot
from engine.ingest import jobs as ingest_jobs
from engine.ingest import tasks as ingest_tasks
from engine.models import IngestBatch, IngestJob
from engine.rounds import generate
from engine.rounds.tasks import generate_item
from modelzoo.models import Candidate, GenerationJob, GenerationJobItem
from tests.modelzoo_engine.conftest import N
from tests.subprocesses import broker_purge, celery_worker_start, process_group_kill

BROKER = os.environ.get("MODELZOO_TEST_BROKER_URL", "redis://127.0.0.1:6379/12")
LONG_AGO = timedelta(hours=2)


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """`committed(fn, **kwargs)`: fn's result, its on_commit callbacks (the requeue) run as a
    committed transaction would run them."""
    def run(fn, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(**kwargs)
    return run


@pytest.fixture
def enqueued(monkeypatch) -> list[int]:
    """The job item ids sent to the model queue, in order (no broker)."""
    sent: list[int] = []
    monkeypatch.setattr(generate, "job_items_enqueue", lambda *, job_item_ids: sent.extend(job_item_ids))
    return sent


def test_the_sweep_sends_again_only_items_a_worker_took_and_then_went_silent_on(gen_project, enqueued, committed):
    job = generate.generation_job_start(project=gen_project)
    taken_lost, queued_long, taken_alive, _ = GenerationJobItem.objects.filter(job=job).order_by("pk")
    now = timezone.now()
    GenerationJobItem.objects.filter(pk=taken_lost.pk).update(heartbeat_at=now - LONG_AGO)
    GenerationJobItem.objects.filter(pk=queued_long.pk).update(updated_at=now - LONG_AGO)  # a backlog, never taken
    GenerationJobItem.objects.filter(pk=taken_alive.pk).update(heartbeat_at=now)
    enqueued.clear()

    swept = committed(generate.job_items_lost_requeue, silent_s=600)
    assert swept.requeued == [taken_lost.pk] and swept.failed == []
    assert enqueued == [taken_lost.pk]
    taken_lost.refresh_from_db()
    assert taken_lost.heartbeat_at is None and taken_lost.requeues == 1 and taken_lost.state == "pending"

    # The requeued task waits behind the backlog: the next sweeps leave it (and the others) alone.
    assert committed(generate.job_items_lost_requeue, silent_s=600).requeued == []
    assert committed(generate.job_items_lost_requeue, silent_s=0).requeued == [taken_alive.pk]  # silent past a 0 s limit
    assert enqueued == [taken_lost.pk, taken_alive.pk]
    assert GenerationJobItem.objects.get(pk=queued_long.pk).requeues == 0


def test_a_sweep_whose_send_the_broker_refuses_changes_nothing_and_the_next_one_sends(gen_project, enqueued,
                                                                                       monkeypatch):
    job = generate.generation_job_start(project=gen_project)
    lost = GenerationJobItem.objects.filter(job=job).first()
    GenerationJobItem.objects.filter(pk=lost.pk).update(heartbeat_at=timezone.now() - LONG_AGO)
    enqueued.clear()

    def broker_down(*, job_item_ids):
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(generate, "job_items_enqueue", broker_down)
    with pytest.raises(ConnectionError):
        generate.job_items_lost_requeue(silent_s=600)
    lost.refresh_from_db()
    assert lost.heartbeat_at is not None and lost.requeues == 0  # still visible to the sweep

    monkeypatch.setattr(generate, "job_items_enqueue", lambda *, job_item_ids: enqueued.extend(job_item_ids))
    assert generate.job_items_lost_requeue(silent_s=600).requeued == [lost.pk] and enqueued == [lost.pk]
    lost.refresh_from_db()
    assert lost.heartbeat_at is None and lost.requeues == 1


def test_work_that_keeps_losing_its_worker_fails_with_a_reason_after_the_limit(gen_project, enqueued, committed):
    job = generate.generation_job_start(project=gen_project)
    job_item = GenerationJobItem.objects.filter(job=job).first()
    for loss in range(settings.LOST_WORK_MAX_REQUEUES):
        GenerationJobItem.objects.filter(pk=job_item.pk).update(heartbeat_at=timezone.now() - LONG_AGO)
        assert committed(generate.job_items_lost_requeue, silent_s=600).requeued == [job_item.pk]
    GenerationJobItem.objects.filter(pk=job_item.pk).update(heartbeat_at=timezone.now() - LONG_AGO)
    swept = committed(generate.job_items_lost_requeue, silent_s=600)
    assert swept.requeued == [] and swept.failed == [job_item.pk]
    job_item.refresh_from_db()
    assert job_item.state == GenerationJobItem.State.FAILED and "worker was lost 4 times" in job_item.error
    assert Item.objects.get(pk=job_item.item_id).state == ItemState.FAILED


def test_a_started_item_records_its_worker_and_the_silent_limit_covers_a_run_and_its_retries(gen_project, enqueued):
    job = generate.generation_job_start(project=gen_project)
    job_item = GenerationJobItem.objects.filter(job=job).first()
    before = timezone.now()
    generate.job_item_generate(job_item_id=job_item.pk)
    job_item.refresh_from_db()
    assert job_item.state == GenerationJobItem.State.DONE and job_item.heartbeat_at >= before
    # A run to the hard limit, then the longest retry countdown (2 s doubling over 5 retries: 32 s).
    assert lost_work.silent_limit_s(generate_item, alive_by=lost_work.TIME_LIMIT) == 300 + 32 + settings.LOST_WORK_MARGIN_S


def test_snapshot_builds_and_ingest_batches_lost_with_their_worker_are_sent_again(project, monkeypatch, tmp_path,
                                                                                 committed):
    built: list[int] = []
    monkeypatch.setattr(export_tasks.snapshot_build_task, "delay", lambda pk: built.append(pk))
    old = timezone.now() - LONG_AGO
    lost = Snapshot.objects.create(project=project, kind="dpo", format="parquet", definition={}, definition_sha256="a",
                                   state=Snapshot.State.BUILDING, heartbeat_at=old)
    Snapshot.objects.create(project=project, kind="dpo", format="parquet", definition={}, definition_sha256="b",
                            state=Snapshot.State.PENDING)  # queued, never taken
    Snapshot.objects.create(project=project, kind="dpo", format="parquet", definition={}, definition_sha256="c",
                            state=Snapshot.State.BUILDING, heartbeat_at=timezone.now())  # beating
    assert committed(export_services.snapshots_lost_requeue, silent_s=600).requeued == [lost.pk]
    assert built == [lost.pk]

    sent: list[int] = []
    monkeypatch.setattr(ingest_jobs, "ingest_batches_enqueue", lambda *, batch_ids: sent.extend(batch_ids))
    job = IngestJob.objects.create(project=project, format="folder", path=str(tmp_path), total=3)
    batches = IngestBatch.objects.bulk_create(
        IngestBatch(job=job, index=i, names=[f"{i}.png"], size=1, heartbeat_at=h)
        for i, h in enumerate([old, None, timezone.now()]))
    assert committed(ingest_jobs.ingest_batches_lost_requeue, silent_s=600).requeued == [batches[0].pk]
    assert sent == [batches[0].pk]

    prepared: list[int] = []
    monkeypatch.setattr(ingest_tasks.ingest_prepare, "delay", lambda pk: prepared.append(pk))
    preparing = IngestJob.objects.create(project=project, path="", total=0, state=IngestJob.State.PREPARING,
                                         heartbeat_at=old)
    assert committed(ingest_jobs.ingest_jobs_lost_requeue, silent_s=600).requeued == [preparing.pk]
    assert prepared == [preparing.pk]


@pytest.mark.django_db(transaction=True)
def test_a_batch_locked_by_its_running_transaction_is_alive_however_old_its_heartbeat(project, tmp_path,
                                                                                      monkeypatch):
    """Ingest holds the batch's row lock from its first statement to its commit; a killed worker's
    lock goes with its connection. So the sweep skips a locked batch and takes it once unlocked."""
    import threading

    from django.db import connections, transaction

    sent: list[int] = []
    monkeypatch.setattr(ingest_jobs, "ingest_batches_enqueue", lambda *, batch_ids: sent.extend(batch_ids))
    job = IngestJob.objects.create(project=project, format="folder", path=str(tmp_path), total=1)
    batch = IngestBatch.objects.create(job=job, index=0, names=["a.png"], size=1,
                                       heartbeat_at=timezone.now() - LONG_AGO)
    locked, release = threading.Event(), threading.Event()

    def running_batch():  # what ingest_batch_run holds while it writes
        with transaction.atomic():
            IngestBatch.objects.select_for_update().get(pk=batch.pk)
            locked.set()
            release.wait(30)
        connections.close_all()

    worker = threading.Thread(target=running_batch)
    worker.start()
    try:
        assert locked.wait(30)
        assert ingest_jobs.ingest_batches_lost_requeue(silent_s=0).requeued == []
    finally:
        release.set()
        worker.join()
    assert ingest_jobs.ingest_batches_lost_requeue(silent_s=0).requeued == [batch.pk] and sent == [batch.pk]


@pytest.mark.django_db(transaction=True)
def test_long_work_says_it_is_alive_while_it_runs(project):
    snapshot = Snapshot.objects.create(project=project, kind="dpo", format="parquet", definition={},
                                       definition_sha256="a", state=Snapshot.State.BUILDING,
                                       heartbeat_at=timezone.now() - LONG_AGO)
    with lost_work.heartbeat(Snapshot.objects.filter(pk=snapshot.pk), every_s=0.05):
        time.sleep(0.4)
    snapshot.refresh_from_db()
    assert timezone.now() - snapshot.heartbeat_at < timedelta(seconds=5)
    assert export_services.snapshots_lost_requeue(silent_s=60).requeued == []


# ------------------------------------------------------------------ a real worker, killed -9
SWEEP_S, MARGIN_S = 2, 1  # the test worker's beat: a sweep every 2 s, a 1 s margin
TIME_LIMIT_S = 10  # generation's hard limit in the worker (GENERATION_TIME_LIMIT_S)
SILENT_S = TIME_LIMIT_S + lost_work.longest_retry_countdown_s(generate_item) + MARGIN_S  # silent_limit_s there


@pytest.fixture
def model_broker(monkeypatch):
    """Generation tasks go to the test's Redis broker (queue model; the sweeps run on default)."""
    from engine.celery import app

    def enqueue(*, job_item_ids):
        with app.connection_for_write(BROKER) as conn:
            for pk in job_item_ids:
                generate_item.apply_async(args=[pk], queue=generate.MODEL_QUEUE, connection=conn)

    for queue in ("model", "default"):
        broker_purge(BROKER, queue)
    monkeypatch.setattr(generate, "job_items_enqueue", enqueue)
    yield
    for queue in ("model", "default"):
        broker_purge(BROKER, queue)


def start_worker(log: Path, tmp_path: Path, *, beat: bool):
    """A worker of the project's app as deployed (Redis' visibility timeout: hours), generation's
    hard limit TIME_LIMIT_S, with beat inside it sweeping every SWEEP_S when `beat`."""
    return celery_worker_start(
        log, broker=BROKER, queue="model,default", concurrency=1, name="losttest", app="engine",
        extra_args=["-B", "-s", str(tmp_path / "beat-schedule")] if beat else [],
        env={"LOST_WORK_SWEEP_S": str(SWEEP_S), "LOST_WORK_MARGIN_S": str(MARGIN_S),
             "GENERATION_TIME_LIMIT_S": str(TIME_LIMIT_S)})


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_item_taken_by_a_worker_killed_9_comes_back_within_a_sweep_and_is_made_once(gen_project, model_broker,
                                                                                      tmp_path):
    job = generate.generation_job_start(project=gen_project, steps=100)  # slow items: one is taken when killed
    log = tmp_path / "worker.log"
    worker = start_worker(log, tmp_path, beat=False)
    try:
        deadline = time.monotonic() + 120
        taken = GenerationJobItem.objects.filter(job=job, state="pending", heartbeat_at__isnull=False)
        while not taken.exists():  # a worker is generating an item: kill it now
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.01)
        process_group_kill(worker)
        lost = list(taken)
        assert lost, "the item finished before the worker could be killed"
        lost_item = lost[0]
        lost_at = lost_item.heartbeat_at + timedelta(seconds=SILENT_S)

        worker = start_worker(log, tmp_path, beat=True)
        deadline = time.monotonic() + 180  # generous: the CPU is shared with other work
        requeued_at = None
        while GenerationJob.objects.get(pk=job.pk).state != GenerationJob.State.FINISHED:
            assert worker.poll() is None and time.monotonic() < deadline, (
                list(GenerationJobItem.objects.filter(job=job).values_list("state", "requeues", "heartbeat_at")),
                log.read_text()[-3000:])
            if requeued_at is None and GenerationJobItem.objects.filter(pk=lost_item.pk, requeues=1).exists():
                requeued_at = timezone.now()
            time.sleep(0.1)
    finally:
        process_group_kill(worker)

    # Sent again once the item could no longer be running, and within a sweep (plus the slack of
    # a loaded machine) after that; never before.
    assert requeued_at is not None
    late = (requeued_at - lost_at).total_seconds()
    assert 0 <= late <= SWEEP_S + 8, late
    states = {ji.pk: (ji.state, ji.requeues) for ji in GenerationJobItem.objects.filter(job=job)}
    assert states[lost_item.pk] == ("done", 1)
    assert all(v == ("done", 0) for pk, v in states.items() if pk != lost_item.pk), states
    # Exactly one set of candidates: every planned (checkpoint, seed) once.
    assert Candidate.objects.filter(item__project=gen_project).count() == job.total_candidates == 4 * N
    assert not Candidate.objects.values("item", "checkpoint", "seed").annotate(n=Count("id")).filter(n__gt=1)
    assert set(Item.objects.filter(project=gen_project).values_list("state", flat=True)) == {ItemState.READY}
