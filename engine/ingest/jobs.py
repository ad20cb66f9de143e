"""Ingest on workers: an import cut into batches of entries, one Celery task per batch.

`ingest_job_start` lists the source once and writes the job and its batches; each batch task
(`engine.ingest.tasks.ingest_batch`) reads only its own entries and ingests them through the
same `ingest_items` as the command, in one transaction under the batch's row lock: a worker
killed mid-batch leaves nothing of it and the redelivered task does it again, a task delivered
twice finds it done. Starting the same import again (same project, format and path) resumes the
unfinished job: its waiting and failed batches are sent again, and the content hashes make
anything that was written already a duplicate. Status lives here, never in Celery results.
"""
from __future__ import annotations

from pathlib import Path

from django.db import transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from engine import lost_work
from engine.errors import Conflict
from engine.ingest.readers import SourceError, read_source
from engine.ingest.services import IngestSummary, ingest_items
from engine.models import IngestBatch, IngestEntry, IngestJob, Project

BATCH_SIZE = 16  # entries per task: about a second of work for SA-1B photos, a few rows of bookkeeping


def ingest_job_start(*, project: Project, path: Path, fmt: str, images_dir: Path | None = None,
                     batch_size: int = BATCH_SIZE) -> tuple[IngestJob, bool]:
    """The job of this import, and whether it resumed an unfinished one; its batches that are not
    done are enqueued (after commit). Raises SourceError when the source cannot be read."""
    path = Path(path).resolve()
    images = str(Path(images_dir).resolve()) if images_dir else ""
    with transaction.atomic():
        job = (IngestJob.objects.select_for_update()
               .filter(project=project, format=fmt, path=str(path), images_dir=images)
               .exclude(state=IngestJob.State.DONE).order_by("-id").first())
        resumed = job is not None
        if job is None:
            names = read_source(path, fmt, images_dir=images_dir).names
            job = IngestJob.objects.create(project=project, format=fmt, path=str(path), images_dir=images,
                                           total=len(names))
            _batches_create(job=job, names=names, batch_size=batch_size)
        else:
            job.batches.filter(state=IngestBatch.State.FAILED).update(state=IngestBatch.State.WAITING, error="")
            if job.state != IngestJob.State.RUNNING:
                job.state, job.finished_at = IngestJob.State.RUNNING, None
                job.save(update_fields=["state", "finished_at"])
        waiting = list(job.batches.filter(state=IngestBatch.State.WAITING).values_list("id", flat=True))
        transaction.on_commit(lambda: ingest_batches_enqueue(batch_ids=waiting))
    if not waiting:
        ingest_job_settle(job_id=job.pk)
        job.refresh_from_db()
    return job, resumed


def _batches_create(*, job: IngestJob, names: list[str], batch_size: int) -> None:
    IngestBatch.objects.bulk_create(
        IngestBatch(job=job, index=i, names=names[start:start + batch_size],
                    size=len(names[start:start + batch_size]))
        for i, start in enumerate(range(0, len(names), batch_size))
    )


def ingest_job_prepare_run(*, job_id: int, batch_size: int = BATCH_SIZE) -> None:
    """The worker's first step of an uploaded import (a job PREPARING): unpack the upload, tell its
    format, list its entries, write the batches and enqueue them. A source that cannot be read (a
    corrupt zip, no format it can tell, a malformed document) fails the job with the reason; a job
    past this step is left alone (a redelivered task)."""
    from engine.ingest import uploads  # uploads starts jobs; a job reads its upload's files

    lost_work.work_taken(IngestJob.objects.filter(pk=job_id, state=IngestJob.State.PREPARING))
    with transaction.atomic():
        job = IngestJob.objects.select_for_update(of=("self",)).select_related("upload").filter(pk=job_id).first()
        if job is None or job.state != IngestJob.State.PREPARING:
            return
        try:
            fmt, path = uploads.upload_source(job.upload)
            names = read_source(path, fmt).names
        except SourceError as exc:
            job.state, job.finished_at = IngestJob.State.FAILED, timezone.now()
            job.error = uploads.without_upload_paths(job.upload_id, str(exc))[:4000]
            job.save(update_fields=["state", "error", "finished_at"])
            return
        job.format, job.path, job.total, job.state = fmt, str(path), len(names), IngestJob.State.RUNNING
        job.save(update_fields=["format", "path", "total", "state"])
        _batches_create(job=job, names=names, batch_size=batch_size)
        waiting = list(job.batches.values_list("id", flat=True))
        transaction.on_commit(lambda: ingest_batches_enqueue(batch_ids=waiting))
    if not waiting:
        ingest_job_settle(job_id=job_id)


def ingest_job_fail(*, job_id: int, reason: str) -> None:
    """The prepare task failed beyond its retries (the upload's files are gone, a bug)."""
    IngestJob.objects.filter(pk=job_id, state=IngestJob.State.PREPARING).update(
        state=IngestJob.State.FAILED, error=reason[:4000], finished_at=timezone.now())


def ingest_job_retry(*, job: IngestJob) -> IngestJob:
    """Send a failed job's failed batches again (what `ingest --queue` does when run again)."""
    with transaction.atomic():
        job = IngestJob.objects.select_for_update().get(pk=job.pk)
        failed = list(job.batches.filter(state=IngestBatch.State.FAILED).values_list("id", flat=True))
        if job.state != IngestJob.State.FAILED or not failed:
            raise Conflict("Only a job with failed batches can be retried; "
                           + ("this one failed reading its source: fix it and import again." if job.error
                              else f"this one is {job.state}."), code="not_retryable")
        job.batches.filter(pk__in=failed).update(state=IngestBatch.State.WAITING, error="", finished_at=None)
        job.state, job.finished_at = IngestJob.State.RUNNING, None
        job.save(update_fields=["state", "finished_at"])
        transaction.on_commit(lambda: ingest_batches_enqueue(batch_ids=failed))
    return job


def ingest_batches_enqueue(*, batch_ids: list[int]) -> None:
    """One `ingest.batch` task per batch, on the default queue."""
    from engine.ingest.tasks import ingest_batch  # a cycle: the task module imports this one

    for pk in batch_ids:
        ingest_batch.delay(pk)


def ingest_batch_run(*, batch_id: int) -> None:
    """Ingest one batch's entries, all in one transaction; nothing to do if it is done already."""
    lost_work.work_taken(IngestBatch.objects.filter(pk=batch_id, state=IngestBatch.State.WAITING))
    with transaction.atomic():
        batch = (IngestBatch.objects.select_for_update(of=("self",)).select_related("job__project")
                 .filter(pk=batch_id).first())
        if batch is None or batch.state == IngestBatch.State.DONE:
            return
        job = batch.job
        source = read_source(Path(job.path), job.format, images_dir=Path(job.images_dir) if job.images_dir else None,
                             only=batch.names)
        summary = ingest_items(project=job.project, items=source.entries)
        batch.state, batch.error, batch.finished_at = IngestBatch.State.DONE, "", timezone.now()
        batch.images_imported, batch.images_duplicate = summary.images_imported, summary.images_duplicate
        batch.masks_imported, batch.masks_duplicate = summary.masks_imported, summary.masks_duplicate
        batch.rejected = summary.rejected
        batch.save(update_fields=["state", "error", "finished_at", "images_imported", "images_duplicate",
                                  "masks_imported", "masks_duplicate", "rejected"])
        IngestEntry.objects.bulk_create(
            IngestEntry(job_id=batch.job_id, batch=batch, name=e["name"][:1000], outcome=e["outcome"],
                        reason=e["reason"], image_id=e["image_id"], masks_added=e["masks_added"],
                        masks_duplicate=e["masks_duplicate"])
            for e in summary.entries
        )
    ingest_job_settle(job_id=batch.job_id)


def ingest_jobs_lost_requeue(*, silent_s: float) -> lost_work.Requeued:
    """Send again the preparations whose worker was lost while it unpacked the upload
    (engine.lost_work): preparing, taken more than `silent_s` ago, not locked by a running one."""
    from engine.ingest.tasks import ingest_prepare  # a cycle: the task module imports this one

    return lost_work.lost_requeue(
        unfinished=IngestJob.objects.filter(state=IngestJob.State.PREPARING, heartbeat_at__isnull=False),
        silent_s=silent_s, requeue=lambda ids: [ingest_prepare.delay(pk) for pk in ids],
        fail=lambda pk, reason: ingest_job_fail(job_id=pk, reason=reason), what="ingest preparations")


def ingest_batches_lost_requeue(*, silent_s: float) -> lost_work.Requeued:
    """Send again the batches whose worker was lost mid-batch (engine.lost_work): waiting, taken
    more than `silent_s` ago, and not locked by a running batch transaction."""
    return lost_work.lost_requeue(
        unfinished=IngestBatch.objects.filter(state=IngestBatch.State.WAITING, heartbeat_at__isnull=False),
        silent_s=silent_s, requeue=lambda ids: ingest_batches_enqueue(batch_ids=ids),
        fail=lambda pk, reason: ingest_batch_fail(batch_id=pk, reason=reason), what="ingest batches")


def ingest_batch_fail(*, batch_id: int, reason: str) -> None:
    """A batch's task failed beyond its retries (the source is gone, a bug): say why on the row.
    Its entries' rows were rolled back; starting the import again retries it."""
    batch = IngestBatch.objects.filter(pk=batch_id).exclude(state=IngestBatch.State.DONE).first()
    if batch is None:
        return
    batch.state, batch.error, batch.finished_at = IngestBatch.State.FAILED, reason[:2000], timezone.now()
    batch.save(update_fields=["state", "error", "finished_at"])
    ingest_job_settle(job_id=batch.job_id)


def ingest_job_settle(*, job_id: int) -> None:
    """Done when no batch waits (failed if one failed); a no-op while some still wait."""
    batches = IngestBatch.objects.filter(job_id=job_id)
    if batches.filter(state=IngestBatch.State.WAITING).exists():
        return
    failed = batches.filter(state=IngestBatch.State.FAILED).exists()
    settled = IngestJob.objects.filter(pk=job_id, state=IngestJob.State.RUNNING).update(
        state=IngestJob.State.FAILED if failed else IngestJob.State.DONE, finished_at=timezone.now())
    if settled and not failed:  # an upload's staged files are of no more use (a failed job keeps them to retry)
        from engine.ingest import uploads

        uploads.upload_files_remove(job_id=job_id)


def ingest_job_progress(*, job: IngestJob) -> dict:
    """The job's figures so far: entries done of the total, images and masks imported or
    duplicate, batches failed (the lead's console, the command's progress bar)."""
    figures = IngestBatch.objects.filter(job=job).aggregate(
        done=Sum("size", filter=Q(state=IngestBatch.State.DONE), default=0),
        images_imported=Sum("images_imported", default=0), images_duplicate=Sum("images_duplicate", default=0),
        masks_imported=Sum("masks_imported", default=0), masks_duplicate=Sum("masks_duplicate", default=0),
        batches_failed=Count("id", filter=Q(state=IngestBatch.State.FAILED)),
    )
    return {"state": job.state, "total": job.total, **figures}


def ingest_jobs_figures(*, job_ids: list[int]) -> dict[int, dict]:
    """Progress and report counts of many jobs in two grouped queries (a list page):
    {job_id: {"progress": {...ingest_job_progress but state...}, "report": {added, duplicate, refused}}}."""
    out = {pk: {"progress": {"done": 0, "images_imported": 0, "images_duplicate": 0, "masks_imported": 0,
                             "masks_duplicate": 0, "batches_failed": 0},
                "report": {o: 0 for o in IngestEntry.Outcome.values}} for pk in job_ids}
    for row in (IngestBatch.objects.filter(job_id__in=job_ids).values("job_id").annotate(
            done=Sum("size", filter=Q(state=IngestBatch.State.DONE), default=0),
            images_imported=Sum("images_imported", default=0), images_duplicate=Sum("images_duplicate", default=0),
            masks_imported=Sum("masks_imported", default=0), masks_duplicate=Sum("masks_duplicate", default=0),
            batches_failed=Count("id", filter=Q(state=IngestBatch.State.FAILED)))):
        out[row.pop("job_id")]["progress"].update(row)
    for job_id, outcome, n in (IngestEntry.objects.filter(job_id__in=job_ids).values_list("job_id", "outcome")
                               .annotate(n=Count("id")).order_by()):
        out[job_id]["report"][outcome] = n
    return out


def ingest_job_summary(*, job: IngestJob) -> IngestSummary:
    """The job's outcome in the command's terms: its batches' figures and rejections, in order."""
    summary = IngestSummary()
    for batch in IngestBatch.objects.filter(job=job).order_by("index"):
        summary.images_imported += batch.images_imported
        summary.images_duplicate += batch.images_duplicate
        summary.masks_imported += batch.masks_imported
        summary.masks_duplicate += batch.masks_duplicate
        summary.rejected.extend(batch.rejected)
        if batch.state == IngestBatch.State.FAILED:
            summary.rejected.append({"name": f"batch {batch.index}", "reason": f"batch {batch.index} failed: "
                                     f"{batch.error} (start the import again to retry it)"})
    return summary
