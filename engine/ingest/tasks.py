"""Celery tasks of ingest (engine.ingest.jobs), on the default queue: an upload's preparation, one batch
of an import's entries, and beat's: unfinished uploads expired, and the preparations and batches lost
with a killed worker sent again (engine.lost_work)."""
from celery import shared_task

from engine import lost_work
from engine.celery import row_task
from engine.ingest import jobs, uploads


@row_task(name="ingest.batch", fail=jobs.ingest_batch_fail, id_name="batch_id",
          soft_time_limit=900, time_limit=960)
def ingest_batch(self, batch_id: int) -> None:
    jobs.ingest_batch_run(batch_id=batch_id)


@row_task(name="ingest.prepare", fail=jobs.ingest_job_fail, id_name="job_id",
          soft_time_limit=3600, time_limit=3660)
def ingest_prepare(self, job_id: int) -> None:
    """Unpack an upload (a 2 GB zip: minutes), tell its format and cut it into batches."""
    jobs.ingest_job_prepare_run(job_id=job_id)


@shared_task(name="ingest.uploads_expire", ignore_result=True, soft_time_limit=300, time_limit=360)
def uploads_expire() -> int:
    """Hourly (beat): uploads left unfinished for INGEST_UPLOAD_EXPIRE_HOURS are cancelled, their files removed."""
    return uploads.uploads_expire()


@shared_task(name="ingest.lost_work_requeue", acks_late=True, soft_time_limit=50, time_limit=60)
def lost_work_requeue() -> None:
    # Both hold their row's lock from their first statement to their commit (engine.lost_work.ROW_LOCK).
    jobs.ingest_jobs_lost_requeue(silent_s=lost_work.silent_limit_s(ingest_prepare, alive_by=lost_work.ROW_LOCK))
    jobs.ingest_batches_lost_requeue(silent_s=lost_work.silent_limit_s(ingest_batch, alive_by=lost_work.ROW_LOCK))
