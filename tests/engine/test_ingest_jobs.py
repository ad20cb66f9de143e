"""Ingest on workers (engine.ingest.jobs and its task): an import cut into batches gives the rows
the command gives, a batch is done once however often it is delivered, and the same import
started again resumes where it stopped. The task is called directly here; a real worker killed
mid-import is tests/engine/test_ingest_tasks.py."""
from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command

from engine.ingest import jobs
from engine.ingest.tasks import ingest_batch
from engine.models import Image, IngestBatch, IngestJob, ObjectMask
from tests.engine import builders
from tests.engine.factories import ProjectFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(monkeypatch):
    """The batch ids the jobs send to Celery, in order (no broker: the test runs the tasks)."""
    ids: list[int] = []
    monkeypatch.setattr(jobs, "ingest_batches_enqueue", lambda *, batch_ids: ids.extend(batch_ids))
    return ids


def start(project, path, fmt, django_capture_on_commit_callbacks, **kwargs):
    with django_capture_on_commit_callbacks(execute=True):
        return jobs.ingest_job_start(project=project, path=path, fmt=fmt, **kwargs)


def rows(project) -> list[tuple]:
    """What ingest stored for a project, independent of ids and order."""
    return sorted(
        (m.image.sha256, m.image.width, m.image.height, m.image.source_name, m.rle_sha256, m.rle_counts, m.area,
         m.bbox, m.label, json.dumps(m.provenance, sort_keys=True))
        for m in ObjectMask.objects.filter(image__project=project).select_related("image")
    )


def with_a_bad_entry(root):
    (root / "images" / "photo1.png").write_bytes(b"not an image")
    (root / "masks" / "stray").mkdir()
    (root / "masks" / "stray" / "x.png").write_bytes(builders.mask_png(builders.box_mask()))
    return root


@pytest.mark.parametrize("fmt", ["folder", "coco", "sa1b"])
def test_batch_tasks_ingest_a_source_as_the_command_does(tmp_path, project, sent, fmt,
                                                         django_capture_on_commit_callbacks):
    path = {"folder": lambda: with_a_bad_entry(builders.write_folder(tmp_path / "src", n_images=5)),
            "coco": lambda: builders.write_coco(tmp_path / "src"),
            "sa1b": lambda: builders.write_sa1b(tmp_path / "src", n_images=5)}[fmt]()
    by_command = ProjectFactory()
    out = io.StringIO()
    call_command("ingest", str(path), "--project", by_command.slug, "--format", fmt, stdout=out, stderr=io.StringIO())

    job, resumed = start(project, path, fmt, django_capture_on_commit_callbacks, batch_size=2)
    assert not resumed and len(sent) == IngestBatch.objects.filter(job=job).count() == -(-job.total // 2)
    for pk in sent:
        ingest_batch(pk)  # the task, run here as a worker runs it
    job.refresh_from_db()
    assert job.state == IngestJob.State.DONE and job.finished_at
    assert rows(project) == rows(by_command) and rows(project)
    summary = jobs.ingest_job_summary(job=job)
    assert out.getvalue().splitlines()[0] == (
        f"imported {summary.images_imported} images ({summary.masks_imported} masks); "
        f"skipped as duplicates {summary.images_duplicate} images ({summary.masks_duplicate} masks); "
        f"rejected {len(summary.rejected)}")
    progress = jobs.ingest_job_progress(job=job)
    assert progress["done"] == progress["total"] == job.total
    assert progress["images_imported"] == Image.objects.filter(project=project).count()


def test_a_batch_delivered_twice_is_done_once(tmp_path, project, sent, django_capture_on_commit_callbacks):
    path = builders.write_sa1b(tmp_path / "src", n_images=3)
    job, _ = start(project, path, "sa1b", django_capture_on_commit_callbacks, batch_size=2)
    for pk in sent + sent:  # a redelivery after the work was committed
        ingest_batch(pk)
    first = IngestBatch.objects.get(job=job, index=0)
    assert (first.images_imported, first.masks_imported, first.images_duplicate) == (2, 4, 0)
    assert Image.objects.filter(project=project).count() == 3
    assert ObjectMask.objects.filter(image__project=project).count() == 6


def test_the_same_import_started_again_resumes_its_job(tmp_path, project, sent, django_capture_on_commit_callbacks):
    path = builders.write_sa1b(tmp_path / "src", n_images=5)
    job, _ = start(project, path, "sa1b", django_capture_on_commit_callbacks, batch_size=2)
    ingest_batch(sent[0])  # then everything stops: the command, the workers, the broker's queue
    sent.clear()

    again, resumed = start(project, path, "sa1b", django_capture_on_commit_callbacks, batch_size=2)
    assert resumed and again.pk == job.pk
    assert sent == list(IngestBatch.objects.filter(job=job, index__gt=0).values_list("id", flat=True))
    for pk in sent:
        ingest_batch(pk)
    job.refresh_from_db()
    assert job.state == IngestJob.State.DONE
    assert Image.objects.filter(project=project).count() == 5
    assert ObjectMask.objects.filter(image__project=project).count() == 10

    _, resumed = start(project, path, "sa1b", django_capture_on_commit_callbacks)  # a finished job: a new one
    assert not resumed


def test_a_failed_batch_is_retried_when_the_import_starts_again(tmp_path, project, sent,
                                                                django_capture_on_commit_callbacks):
    path = builders.write_sa1b(tmp_path / "src", n_images=3)
    job, _ = start(project, path, "sa1b", django_capture_on_commit_callbacks, batch_size=2)
    ingest_batch(sent[0])
    jobs.ingest_batch_fail(batch_id=sent[1], reason="OSError: the disk went away")  # the task's on_failure
    job.refresh_from_db()
    assert job.state == IngestJob.State.FAILED
    assert "the disk went away" in jobs.ingest_job_summary(job=job).rejected[-1]["reason"]
    sent.clear()

    _, resumed = start(project, path, "sa1b", django_capture_on_commit_callbacks, batch_size=2)
    assert resumed and len(sent) == 1
    ingest_batch(sent[0])
    job.refresh_from_db()
    assert job.state == IngestJob.State.DONE and Image.objects.filter(project=project).count() == 3


def test_the_command_on_workers_waits_and_reports(tmp_path, project, monkeypatch):
    """`ingest --queue`: here the 'workers' run each batch as it is sent (the test's transaction
    never commits, so the sending runs at once)."""
    monkeypatch.setattr(jobs, "ingest_batches_enqueue",
                        lambda *, batch_ids: [ingest_batch(pk) for pk in batch_ids])
    monkeypatch.setattr(jobs.transaction, "on_commit", lambda fn, *args, **kwargs: fn())
    root = builders.write_folder(tmp_path / "src", n_images=3)
    out = io.StringIO()
    call_command("ingest", str(root), "--project", project.slug, "--format", "folder", "--queue",
                 "--batch-size", "2", stdout=out, stderr=io.StringIO())
    assert "imported 3 images (6 masks); skipped as duplicates 0 images (0 masks); rejected 0" in out.getvalue()


def test_masks_written_by_copy_are_the_rows_bulk_create_writes(tmp_path, monkeypatch):
    """PostgreSQL takes COPY for an image's masks, other databases bulk_create: the same rows."""
    from types import SimpleNamespace

    from engine.ingest import services
    from engine.ingest.readers import read_source

    path = builders.write_coco(tmp_path / "src")
    by_copy, portable = ProjectFactory(), ProjectFactory()
    services.ingest_items(project=by_copy, items=read_source(path, "coco").entries)
    monkeypatch.setattr(services, "connection", SimpleNamespace(vendor="other"))
    services.ingest_items(project=portable, items=read_source(path, "coco").entries)
    assert rows(by_copy) == rows(portable) and len(rows(by_copy)) == 6


def test_a_worker_parses_a_coco_document_once_for_all_its_batches(tmp_path, project, sent, monkeypatch,
                                                                  django_capture_on_commit_callbacks):
    """A COCO file of 100k photos is one JSON of gigabytes: a worker keeps the last one it parsed."""
    from engine.ingest import readers

    path = builders.write_coco(tmp_path / "src", builders.coco_dict(n_images=5))
    job, _ = start(project, path, "coco", django_capture_on_commit_callbacks, batch_size=2)
    parsed = []
    monkeypatch.setattr(readers, "_coco_prepared", lambda *a, _real=readers._coco_prepared: parsed.append(a) or _real(*a))
    monkeypatch.setattr(readers, "_COCO_KEPT", {})
    for pk in sent:
        ingest_batch(pk)
    assert len(sent) == 3 and len(parsed) == 1
    assert Image.objects.filter(project=project).count() == 5
    assert ObjectMask.objects.filter(image__project=project).count() == 15
