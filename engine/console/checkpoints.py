"""Checkpoints: the registry of the checkpoints a project may use, their lineage drawn as a tree
(SVG), offline metrics beside the Elo the project's comparisons give them, upload, the project's
mix and shares, and training runs with live progress and loss curves. Writes go through the
model zoo and rounds APIs (modelzoo.apis, engine.rounds.apis)."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.urls import path
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from engine import selectors
from engine.console.pages import console_error, console_render
from engine.errors import EngineError
from engine.models import Role
from engine.rounds import selectors as round_selectors
from engine.stats import selectors as stats_selectors
from modelzoo import selectors as zoo_selectors

SHOWN = 100  # checkpoints on the page (the newest); the registry API pages through the rest
NODE_W, NODE_H, GAP_X, GAP_Y = 190, 38, 40, 12


def lineage_svg(checkpoints: list, current: set[int]) -> str:
    """The checkpoints as a tree, roots on the left, children to their right (one row per
    checkpoint in depth-first order, so that a parent sits on its first child's row)."""
    by_id = {c.pk: c for c in checkpoints}
    children: dict[int | None, list] = {}
    for c in sorted(checkpoints, key=lambda c: (c.created_at, c.pk)):
        parent = c.parent_id if c.parent_id in by_id else None
        children.setdefault(parent, []).append(c)
    place: dict[int, tuple[int, int]] = {}
    row = 0

    def walk(c, depth):
        nonlocal row
        place[c.pk] = (depth, row)
        kids = children.get(c.pk, [])
        if not kids:
            row += 1
        for kid in kids:
            walk(kid, depth + 1)

    for root in children.get(None, []):
        walk(root, 0)
    if not place:
        return mark_safe('<p class="muted">No checkpoints.</p>')
    depth = max(d for d, _ in place.values()) + 1
    width, height = depth * (NODE_W + GAP_X), row * (NODE_H + GAP_Y)
    xy = {pk: (d * (NODE_W + GAP_X), r * (NODE_H + GAP_Y)) for pk, (d, r) in place.items()}
    edges = format_html_join("", '<path class="edge" d="M{} {} C{} {} {} {} {} {}"/>', (
        (xy[c.parent_id][0] + NODE_W, xy[c.parent_id][1] + NODE_H / 2,
         xy[c.parent_id][0] + NODE_W + GAP_X / 2, xy[c.parent_id][1] + NODE_H / 2,
         xy[c.pk][0] - GAP_X / 2, xy[c.pk][1] + NODE_H / 2, xy[c.pk][0], xy[c.pk][1] + NODE_H / 2)
        for c in checkpoints if c.pk in xy and c.parent_id in xy))
    nodes = format_html_join("", (
        '<g class="node{}" transform="translate({},{})" id="lineage-{}"><title>{}</title>'
        '<rect width="{}" height="{}"/><text x="8" y="15">{}</text><text class="sub" x="8" y="30">#{} · {}{}</text></g>'), (
        (" current" if c.pk in current else "", xy[c.pk][0], xy[c.pk][1], c.pk, str(c), NODE_W, NODE_H,
         str(c)[:30], c.pk, c.backend, " · in the mix" if c.pk in current else "")
        for c in checkpoints if c.pk in xy))
    return format_html('<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" '
                       'role="img" aria-label="checkpoint lineage">{}{}</svg>', width, height, width, height, edges, nodes)


@login_required
def checkpoints_page(request, slug: str):
    try:
        project = selectors.project_get_for_user(request.user, slug, roles=[Role.LEAD, Role.TRAINER])
    except EngineError as exc:
        return console_error(request, exc, area="checkpoints")
    checkpoints = list(zoo_selectors.checkpoints_for_project(project).select_related("parent")
                       .order_by("-created_at", "-id")[:SHOWN])
    mix = {pc.checkpoint_id: pc.share for pc in zoo_selectors.project_mix(project)}
    total_share = sum(mix.values()) or 1.0
    elo = {r["checkpoint_id"]: r for r in stats_selectors.ratings(project, stats_selectors.Filters())["checkpoints"]}
    rows = [{"checkpoint": c, "eval": stats_selectors.eval_figures(c), "elo": elo.get(c.pk),
             "share": mix.get(c.pk), "share_fraction": mix[c.pk] / total_share if c.pk in mix else None,
             "stage": (c.recipe or {}).get("stage"), "losses": (c.recipe or {}).get("history")}
            for c in checkpoints]
    runs = list(round_selectors.training_run_list(project=project).order_by("-created_at", "-id")[:20])
    curves = {str(run.pk): _curves(run) for run in runs}
    return console_render(request, "console/checkpoints.html", {
        "rows": rows, "lineage": lineage_svg(checkpoints, set(mix)), "runs": runs, "curves": curves,
        "rounds": project.rounds.filter(state="closed").order_by("-index").values("index", "sft_snapshot_id",
                                                                                  "dpo_snapshot_id"),
        "is_lead": Role.LEAD in project.user_roles,
    }, area="checkpoints", project=project, entry="src/console/checkpoints.js")


def _curves(run) -> dict:
    """A run's loss curves per stage: live from its progress, or the trained checkpoint's history."""
    if run.checkpoint_id and (run.checkpoint.recipe or {}).get("history"):
        history = run.checkpoint.recipe["history"]
        return {stage: [[p["step"], p["loss"]] for p in points] for stage, points in history.items() if points}
    losses = (run.progress or {}).get("losses") or {}
    return {stage: [[p["step"], p["loss"]] for p in points] for stage, points in losses.items() if points}


urlpatterns = [
    path("projects/<slug:slug>/checkpoints/", checkpoints_page, name="console-checkpoints"),
]
