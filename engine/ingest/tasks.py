"""Celery tasks of ingest (engine.ingest.jobs), on the default queue: an upload's preparation, and one batch
of an import's entries."""
from celery import shared_task

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
