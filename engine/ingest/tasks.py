"""Celery task of ingest: one batch of an import's entries (engine.ingest.jobs), on the default queue."""
from engine.celery import row_task
from engine.ingest import jobs


@row_task(name="ingest.batch", fail=jobs.ingest_batch_fail, id_name="batch_id",
          soft_time_limit=900, time_limit=960)
def ingest_batch(self, batch_id: int) -> None:
    jobs.ingest_batch_run(batch_id=batch_id)
