"""The done-criterion of issue 3: a real Celery worker (Redis broker, PostgreSQL) is SIGKILLed
in the middle of a job and started again; every candidate then exists exactly once, and every
GLB passes the Khronos glTF validator."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db.models import Count

from annotation.models import Item, ItemState
from engine.celery import app
from engine.rounds import generate
from modelzoo import services
from modelzoo.models import Candidate, GenerationJob, GenerationJobItem
from engine.rounds.tasks import generate_item
from tests.modelzoo_engine.conftest import photo_with_masks
from tests.subprocesses import ROOT, broker_purge, celery_worker_start, child_process_env, process_group_kill

BROKER = os.environ.get("MODELZOO_TEST_BROKER_URL", "redis://127.0.0.1:6379/12")
N_CANDIDATES = 8


def start_worker(log_path: Path) -> subprocess.Popen:
    return celery_worker_start(log_path, broker=BROKER, queue="model", concurrency=1, name="gentest")


@pytest.fixture
def broker(monkeypatch):
    """Send the job's tasks to the test's Redis broker; purge what an earlier run left there."""
    broker_purge(BROKER, "model")

    def enqueue(*, job_item_ids):
        with app.connection_for_write(BROKER) as conn:
            for pk in job_item_ids:
                generate_item.apply_async(args=[pk], queue=generate.MODEL_QUEUE, connection=conn)

    monkeypatch.setattr(generate, "job_items_enqueue", enqueue)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_job_then_restarted_makes_every_candidate_once(project, checkpoint, broker, tmp_path):
    project.candidates_per_item = N_CANDIDATES
    project.save(update_fields=["candidates_per_item"])
    for seed in range(2):
        photo_with_masks(project, seed=seed, n_masks=3)
    services.project_mix_set(project=project, mix=[(checkpoint, 1.0)])
    job = generate.generation_job_start(project=project)
    total = job.total_candidates
    assert job.total_items == 6 and total == 48

    log = tmp_path / "worker.log"
    worker = start_worker(log)
    try:
        deadline = time.monotonic() + 150  # the worker imports torch and loads the model first
        while Candidate.objects.count() == 0:  # the first item's candidates are written together
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        process_group_kill(worker)
        at_kill = Candidate.objects.count()
        assert 0 < at_kill < total, "the worker finished before it could be killed"
        assert GenerationJob.objects.get(pk=job.pk).state == GenerationJob.State.RUNNING

        worker = start_worker(log)
        deadline = time.monotonic() + 150  # generous: the CPU is shared with other work
        while GenerationJob.objects.get(pk=job.pk).state != GenerationJob.State.FINISHED:
            assert worker.poll() is None and time.monotonic() < deadline, (
                Candidate.objects.count(), list(GenerationJobItem.objects.filter(job=job).values_list("state", "done")),
                log.read_text()[-3000:])
            time.sleep(0.25)
    finally:
        process_group_kill(worker)

    assert Candidate.objects.count() == total
    assert not Candidate.objects.values("item", "checkpoint", "seed").annotate(n=Count("id")).filter(n__gt=1)
    for job_item in GenerationJobItem.objects.filter(job=job).select_related("item"):
        assert job_item.state == GenerationJobItem.State.DONE and job_item.done == N_CANDIDATES
        made = sorted(Candidate.objects.filter(item=job_item.item).values_list("checkpoint_id", "seed"))
        assert made == sorted(map(tuple, job_item.plan))
    assert set(Item.objects.filter(project=project).values_list("state", flat=True)) == {ItemState.READY}

    media = Path(settings.MEDIA_ROOT)
    files = sorted({str(media / name) for c in Candidate.objects.all() for name in (c.glb.name, c.glb_compact.name)})
    result = subprocess.run(["node", str(ROOT / "frontend/scripts/validate-gltf.mjs"), *files],
                            capture_output=True, text=True, timeout=120)
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"], [f for f in report["files"] if f["errors"]][:3]
    assert len(report["files"]) == len(files) >= total


# An enqueue in a process of its own: the laptop's broker in the test's folder (this process's
# settings, and kombu's in-process broker state, point at the suite's folder).
ENQUEUE = ("import sys, django; django.setup(); from engine.rounds import generate; "
           "generate.job_items_enqueue(job_item_ids=[int(a) for a in sys.argv[1:]])")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_laptop_worker_takes_the_next_item_without_waiting_out_a_broker_poll(project, checkpoint, monkeypatch,
                                                                             tmp_path):
    """make run's worker on make run's broker, Celery's filesystem transport (issue 18): the folder
    is polled, and a worker that reserved one task at a time waited out kombu's default 1 s poll
    after every item, so a job took a second an item whatever the model. Timed from the first
    item done (the worker's start and the model's load are not the point) to the job's end."""
    project.candidates_per_item = 2
    project.save(update_fields=["candidates_per_item"])
    for seed in range(4):
        photo_with_masks(project, seed=seed, n_masks=3)
    services.project_mix_set(project=project, mix=[(checkpoint, 1.0)])
    enqueued = []
    monkeypatch.setattr(generate, "job_items_enqueue", lambda *, job_item_ids: enqueued.extend(job_item_ids))
    job = generate.generation_job_start(project=project, steps=1)
    assert job.total_items == len(enqueued) == 12

    env = child_process_env(CELERY_BROKER_URL="filesystem://", VAR_DIR=str(tmp_path / "var"))
    subprocess.run([sys.executable, "-c", ENQUEUE, *map(str, enqueued)], cwd=ROOT, env=env, check=True, timeout=120)
    log_path = tmp_path / "worker.log"
    with open(log_path, "ab") as log:
        worker = subprocess.Popen(  # as make run starts it, less beat
            [sys.executable, "-m", "celery", "-A", "engine", "worker", "-Q", "default,model", "--concurrency", "1",
             "-l", "INFO", "-n", f"fstest{os.getpid()}@%h"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180  # generous: the worker's start on a shared, loaded machine
        while GenerationJob.objects.get(pk=job.pk).state != GenerationJob.State.FINISHED:
            assert worker.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.1)
    finally:
        process_group_kill(worker)

    job.refresh_from_db()
    done = sorted(GenerationJobItem.objects.filter(job=job, state=GenerationJobItem.State.DONE)
                  .values_list("updated_at", flat=True))
    assert len(done) == 12 and Candidate.objects.filter(item__project=project).count() == 24
    per_item = (job.finished_at - done[0]).total_seconds() / (len(done) - 1)
    # An item here (1 step, 2 candidates, a 96 x 72 photo) is a few hundredths of a second of
    # work; waiting out a 1 s poll after each made it 1 s. Half a second leaves room for a busy CPU.
    assert per_item < 0.5, (per_item, log_path.read_text()[-3000:])
