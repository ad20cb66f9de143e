"""Run an import job the API started (202) as a worker would, in this process: its prepare step,
then each batch. (A real worker runs them in tests/engine/test_ingest_tasks.py and the browser test.)"""
from __future__ import annotations

from engine.ingest import jobs
from engine.models import IngestBatch, IngestEntry, IngestJob


def import_job_run(job_id: int) -> IngestJob:
    jobs.ingest_job_prepare_run(job_id=job_id)
    for batch_id in IngestBatch.objects.filter(job_id=job_id, state=IngestBatch.State.WAITING).values_list(
            "id", flat=True):
        jobs.ingest_batch_run(batch_id=batch_id)
    return IngestJob.objects.get(pk=job_id)


class ImportResult:
    """What a client of POST .../imports/ sees: the refusal (a 4xx), or the finished job's figures,
    its error (a source it could not read) and its refused entries."""

    def __init__(self, client, project, response):
        self.response = response
        self.status = response.status_code
        self.job = None
        if self.status == 202:
            job = import_job_run(response.json()["id"])
            self.job = client.get(f"/api/v1/projects/{project.slug}/imports/{job.pk}/").json()
            self.rejected = list(IngestEntry.objects.filter(job=job, outcome="refused").order_by("id")
                                 .values("name", "reason"))

    @property
    def message(self) -> str:
        """The reason it was refused, whole (4xx) or when the worker read it (the job's error)."""
        if self.job is not None:
            assert self.job["state"] == "failed" and self.job["error"], self.job
            return self.job["error"]
        assert 400 <= self.status < 500, self.response.content[:300]
        return self.response.json()["error"]["message"]
