"""Import: drop files on the page, uploaded in chunks, ingested by a job on the workers
(engine.ingest.uploads and jobs; the page's script is frontend/src/console/imports.js)."""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.urls import path

from engine import selectors
from engine.console.pages import console_error, console_render
from engine.errors import EngineError, NotFound
from engine.ingest.jobs import ingest_jobs_figures
from engine.models import IngestJob, Role

RECENT_JOBS = 20


@login_required
def import_page(request, slug: str, job_id: int | None = None):
    try:
        project = selectors.project_get_for_user(request.user, slug, roles=[Role.LEAD])
        job = None
        if job_id is not None:
            job = IngestJob.objects.filter(project=project, pk=job_id).first()
            if job is None:
                raise NotFound(f"No import {job_id} in project '{project.slug}'.")
    except EngineError as exc:
        return console_error(request, exc, area="import", project=None)
    jobs = list(IngestJob.objects.filter(project=project).select_related("created_by").order_by("-id")[:RECENT_JOBS])
    figures = ingest_jobs_figures(job_ids=[j.pk for j in jobs])
    rows = [(j, {"total": j.total, **figures[j.pk]["progress"]}) for j in jobs]
    return console_render(request, "console/import.html", {
        "rows": rows, "job": job, "chunk_bytes": min(8 * 1024**2, settings.INGEST_UPLOAD_CHUNK_BYTES),
        "max_upload_bytes": settings.INGEST_MAX_UPLOAD_BYTES,
    }, area="import", project=project, entry="src/console/imports.js")


urlpatterns = [
    path("projects/<slug:slug>/import/", import_page, name="console-import"),
    path("projects/<slug:slug>/import/<int:job_id>/", import_page, name="console-import-job"),
]
