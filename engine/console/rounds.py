"""Rounds: open one (alpha, which photos or masks, N, steps, the checkpoint mix), follow its
generation live with a retry for failed items, send its hard cases back for more ranked seeds,
close it, its snapshots and the checkpoint trained on it. The pages render what the selectors read
(items live; judgements and acceptance from the dashboard's rollups, as the dashboard shows them);
their buttons call the JSON API (engine.rounds.apis)."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.urls import path

from annotation.selectors import artist_queue
from engine import selectors
from engine.console.pages import console_error, console_render
from engine.errors import EngineError
from engine.exports.definition import PAIRINGS
from engine.models import ObjectMask, Role
from engine.rounds import selectors as round_selectors
from engine.rounds import services as round_services
from engine.stats import selectors as stats_selectors
from modelzoo import selectors as zoo_selectors
from modelzoo.models import Checkpoint

ROLES = [Role.LEAD, Role.TRAINER]  # leads act; trainers follow (the API refuses them the lead's writes)
ENTRY = "src/console/rounds.js"


@login_required
def rounds_page(request, slug: str):
    try:
        project = selectors.project_get_for_user(request.user, slug, roles=ROLES)
    except EngineError as exc:
        return console_error(request, exc, area="rounds")
    rollups = stats_selectors.rollup_state(project)
    rounds = round_selectors.rounds_status(project=project, figures=stats_selectors.round_figures(project))
    mix = {pc.checkpoint_id: pc.share for pc in zoo_selectors.project_mix(project)}
    checkpoints = [{"id": c.pk, "name": str(c), "backend": c.backend, "share": mix.get(c.pk)}
                   for c in zoo_selectors.checkpoints_for_project(project).order_by("-created_at", "-id")[:50]]
    return console_render(request, "console/rounds.html", {
        "rounds": list(reversed(rounds)), "open_round": next((r for r in rounds if r["state"] == "open"), None),
        "is_lead": Role.LEAD in project.user_roles, "checkpoints": checkpoints,
        "new_masks": round_selectors.masks_without_items(project=project).count(),
        "all_masks": ObjectMask.objects.filter(image__project=project).count(), "rollups": rollups,
    }, area="rounds", project=project, entry=ENTRY)


@login_required
def round_page(request, slug: str, index: int):
    try:
        project = selectors.project_get_for_user(request.user, slug, roles=ROLES)
        rnd = round_services.round_get(project=project, index=index)
    except EngineError as exc:
        return console_error(request, exc, area="rounds")
    figures = stats_selectors.round_figures(project).get(rnd.index, {})
    rankers = zoo_selectors.checkpoints_for_project(project).filter(role=Checkpoint.Role.RANKER).order_by("-id")[:20]
    return console_render(request, "console/round.html", {
        "rankers": rankers, "hard_cases_waiting": artist_queue(project=project).filter(round=rnd).count(),
        "round": round_selectors.round_status(round=rnd, figures=figures), "is_lead": Role.LEAD in project.user_roles,
        "rollups": stats_selectors.rollup_state(project),
        "pairings": PAIRINGS, "default_pairing": round_services.DEFAULT_PAIRING,
        "training_runs": round_selectors.training_run_list(project=project).filter(round=rnd).order_by("-id")[:10],
    }, area="rounds", project=project, entry=ENTRY)


urlpatterns = [
    path("projects/<slug:slug>/rounds/", rounds_page, name="console-rounds"),
    path("projects/<slug:slug>/rounds/<int:index>/", round_page, name="console-round"),
]
