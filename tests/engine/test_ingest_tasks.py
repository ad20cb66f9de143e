"""Issue 18, item 2: an import on a real Celery worker (Redis broker, PostgreSQL) survives the
worker being SIGKILLed mid-import: the same import started again resumes its job, and in the
end every photo and every mask exists exactly once. The same for the command run in one
process, killed and run again."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import masks as mask_codec
from engine.celery import app
from engine.ingest import jobs
from engine.ingest.tasks import ingest_batch
from engine.models import Image, IngestBatch, IngestJob, ObjectMask
from tests.engine import builders
from tests.subprocesses import ROOT, broker_purge, celery_worker_start, child_process_env, process_group_kill

BROKER = os.environ.get("INGEST_TEST_BROKER_URL", "redis://127.0.0.1:6379/7")
N_PHOTOS, N_MASKS = 32, 20

pytestmark = [pytest.mark.slow, pytest.mark.postgresql, pytest.mark.django_db(transaction=True)]


def write_source(root: Path) -> dict[str, set[str]]:
    """SA-1B files of photos big enough that a batch takes a while; the masks each photo has."""
    root.mkdir(parents=True)
    expected = {}
    for i in range(N_PHOTOS):
        h, w = 600, 900
        (root / f"sa_{i}.jpg").write_bytes(builders.photo_bytes(w, h, seed=i, fmt="JPEG"))
        rles = [mask_codec.encode(builders.box_mask(w, h, box=(5 * k + i % 7, 3 * k, 5 * k + 40 + i % 7, 3 * k + 30 + k)))
                for k in range(N_MASKS)]
        annotations = [{"id": k, "segmentation": {"size": [h, w], "counts": rle}, "predicted_iou": 0.9}
                       for k, rle in enumerate(rles)]
        (root / f"sa_{i}.json").write_text(json.dumps({"image": {"file_name": f"sa_{i}.jpg"},
                                                       "annotations": annotations}))
        expected[f"sa_{i}.jpg"] = set(rles)
    return expected


def assert_each_photo_and_mask_once(project, expected: dict[str, set[str]]) -> None:
    assert Image.objects.filter(project=project).count() == N_PHOTOS
    assert ObjectMask.objects.filter(image__project=project).count() == N_PHOTOS * N_MASKS
    stored: dict[str, list[str]] = {}
    for name, counts in ObjectMask.objects.filter(image__project=project).values_list("image__source_name",
                                                                                       "rle_counts"):
        stored.setdefault(name, []).append(counts)
    assert {name: sorted(c) for name, c in stored.items()} == {name: sorted(c) for name, c in expected.items()}


def start_worker(log_path: Path) -> subprocess.Popen:
    return celery_worker_start(log_path, broker=BROKER, queue="default", concurrency=2, name="ingesttest")


@pytest.fixture
def broker(monkeypatch):
    """The job's batches go to the test's Redis broker; what an earlier run left there is purged."""
    def enqueue(*, batch_ids):
        with app.connection_for_write(BROKER) as conn:
            for pk in batch_ids:
                ingest_batch.apply_async(args=[pk], queue="default", connection=conn)

    broker_purge(BROKER, "default")
    monkeypatch.setattr(jobs, "ingest_batches_enqueue", enqueue)
    yield
    broker_purge(BROKER, "default")


def test_worker_killed_mid_import_then_the_import_again_stores_each_photo_and_mask_once(project, broker, tmp_path):
    expected = write_source(tmp_path / "sa1b")
    log = tmp_path / "worker.log"
    worker = start_worker(log)
    try:
        job, _ = jobs.ingest_job_start(project=project, path=tmp_path / "sa1b", fmt="sa1b", batch_size=2)
        deadline = time.monotonic() + 90
        while not IngestBatch.objects.filter(job=job, state=IngestBatch.State.DONE).exists():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.01)
        process_group_kill(worker)
        done = IngestBatch.objects.filter(job=job, state=IngestBatch.State.DONE).count()
        assert 0 < done < job.batches.count(), "the worker finished before it could be killed"
        assert Image.objects.filter(project=project).count() < N_PHOTOS

        again, resumed = jobs.ingest_job_start(project=project, path=tmp_path / "sa1b", fmt="sa1b", batch_size=2)
        assert resumed and again.pk == job.pk
        worker = start_worker(log)
        deadline = time.monotonic() + 150  # generous: the CPU is shared with other work
        while IngestJob.objects.get(pk=job.pk).state == IngestJob.State.RUNNING:
            assert worker.poll() is None and time.monotonic() < deadline, (
                jobs.ingest_job_progress(job=job), log.read_text()[-3000:])
            time.sleep(0.1)
    finally:
        process_group_kill(worker)
    job.refresh_from_db()
    assert job.state == IngestJob.State.DONE
    assert_each_photo_and_mask_once(project, expected)
    progress = jobs.ingest_job_progress(job=job)
    assert (progress["images_imported"], progress["masks_imported"]) == (N_PHOTOS, N_PHOTOS * N_MASKS)


def test_the_command_killed_mid_import_then_run_again_stores_each_photo_and_mask_once(project, tmp_path):
    expected = write_source(tmp_path / "sa1b")
    env = child_process_env()
    command = [sys.executable, "manage.py", "ingest", str(tmp_path / "sa1b"), "--project", project.slug,
               "--format", "sa1b", "-v", "0"]
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while Image.objects.filter(project=project).count() < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()[-3000:]
            time.sleep(0.01)
    finally:
        process_group_kill(proc)
    assert Image.objects.filter(project=project).count() < N_PHOTOS, "the command finished before it was killed"

    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "rejected 0" in out.stdout
    assert_each_photo_and_mask_once(project, expected)
