"""Review: per annotator, the figures that matter (rollups of engine.stats, with outlier flags)
and their recent judgements; one judgement replayed in 3D (the workbench's viewer modules), with
reject / restore and "make this item gold" calling the annotation API."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.urls import path

from annotation import selectors as annotation_selectors
from annotation.models import Judgement
from engine import selectors
from engine.console.pages import console_error, console_render
from engine.errors import EngineError, ValidationFailed
from engine.models import Role
from engine.stats import selectors as stats_selectors

RECENT = 50


@login_required
def review_page(request, slug: str):
    try:
        project = selectors.project_get_for_user(request.user, slug, roles=[Role.LEAD])
        annotator = request.GET.get("annotator") or None
        status = request.GET.get("status", Judgement.Status.ACCEPTED)
        if status and status not in Judgement.Status.values:
            raise ValidationFailed(f"Unknown status '{status}'; use accepted, rejected or superseded.")
        rollups = stats_selectors.rollup_state(project)
        annotators = stats_selectors.annotator_table(project, stats_selectors.Filters())
    except EngineError as exc:
        return console_error(request, exc, area="review")
    judgements = (annotation_selectors.review_queue(project=project, annotator_username=annotator, status=status or None)
                  .select_related("item").prefetch_related(None)[:RECENT])
    return console_render(request, "console/review.html", {
        "annotators": annotators, "annotator": annotator, "status": status, "statuses": Judgement.Status.choices,
        "judgements": judgements, "recent": RECENT, "rollups": rollups,
    }, area="review", project=project, entry="src/console/review.js")


@login_required
def judgement_page(request, slug: str, judgement_id: int):
    try:
        project = selectors.project_get_for_user(request.user, slug, roles=[Role.LEAD])
        judgement = annotation_selectors.judgement_get_for_user(request.user, judgement_id, lead_only=True)
        if judgement.project_id != project.pk:
            raise ValidationFailed(f"Judgement {judgement_id} is not in project '{slug}'.")
    except EngineError as exc:
        return console_error(request, exc, area="review")
    return console_render(request, "console/judgement.html", {"judgement": judgement},
                          area="review", project=project, entry="src/console/replay.js")


urlpatterns = [
    path("projects/<slug:slug>/review/", review_page, name="console-review"),
    path("projects/<slug:slug>/review/judgements/<int:judgement_id>/", judgement_page, name="console-judgement"),
]
