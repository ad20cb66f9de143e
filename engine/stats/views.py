"""The dashboard page: server-rendered, charts as inline SVG (engine.stats.charts)."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils.safestring import mark_safe

from annotation.models import ItemState
from engine.errors import EngineError, ValidationFailed
from engine.models import Role, Round
from engine.stats import charts, health, selectors
from engine.stats.apis import FiltersIn

STATE_COLORS = {"waiting": "#adb5bd", "ready": "#3b5bdb", "in_progress": "#7048e8", "done": "#2f9e44",
                "hard_case": "#e8590c", "skipped": "#868e96", "flagged": "#c92a2a", "failed": "#c92a2a"}


@login_required
def dashboard(request, slug: str):
    try:
        project = selectors.dashboard_project_get(request.user, slug)
        form = FiltersIn(data=request.GET)
        if not form.is_valid():  # the API's 400, as a page: what was wrong, field by field
            raise ValidationFailed("The filters are not valid: " + "; ".join(
                f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items()))
        params = form.validated_data
        is_lead = Role.LEAD in project.user_roles
        f = selectors.filters_resolve(request.user, project, round_index=params.get("round"),
                                      annotator=params.get("annotator") if is_lead else None,
                                      since=params.get("since"), until=params.get("until"))
    except EngineError as exc:
        return render(request, "engine/error.html", {"message": exc.message}, status=exc.status)

    bucket = params.get("bucket", "day")
    tp = selectors.throughput(project, f)
    series = selectors.timeseries(project, f, bucket=bucket)
    if bucket == "hour":
        series = series[-72:]
    labels = [s["t"].strftime("%d %b %H:00" if bucket == "hour" else "%d %b") for s in series]
    acc = selectors.acceptance(project, f)
    rat = selectors.ratings(project, f)
    rankers = [r for r in selectors.ranker_agreement(project) if r["agreement"] is not None]
    states = [s for s in ItemState.values]
    queue = tp["queue"]
    context = {
        "project": project, "is_lead": is_lead, "f": f, "bucket": bucket, "query": f.as_query(),
        "rounds": Round.objects.filter(project=project).order_by("index"),
        "annotators": (get_user_model().objects.filter(memberships__project=project,
                                                       memberships__role=Role.ANNOTATOR)
                       .order_by("username").values_list("username", flat=True).distinct()) if is_lead else [],
        "tp": tp, "series": series, "acc": acc, "rat": rat,
        "jobs": selectors.generation_jobs(project, f, limit=8),
        "workers": health.celery_health(),
        "annotator_rows": selectors.annotator_table(project, f) if is_lead else None,
        "queue_rows": [(ItemState(s).label, queue[s]) for s in states],
        "chart_series": mark_safe(charts.bars(labels, [s["judgements"] for s in series],
                                              title=f"Judgements per {bucket}",
                                              overlay=[s["judgements"] - s["accepted"] + s["below_threshold"]
                                                       for s in series])),
        "chart_queue": mark_safe(charts.hbars([ItemState(s).label for s in states], [queue[s] for s in states],
                                              title="Items by state",
                                              colors={ItemState(s).label: STATE_COLORS[s] for s in states})),
        "chart_elo": mark_safe(charts.forest(rat["checkpoints"], title="Bradley-Terry Elo per checkpoint")),
        "chart_acceptance": mark_safe(charts.hbars(
            [f"round {r['round']} (alpha {r['alpha']})" for r in acc["per_round"]],
            [r["acceptance_rate"] or 0 for r in acc["per_round"]], title="Acceptance rate per round",
            value_format=lambda v: f"{v:.0%}")),
        "chart_ranker": mark_safe(charts.hbars(
            [f"round {r['round'] if r['round'] is not None else '-'}: {r['checkpoint'].split(':', 1)[-1][:22]}"
             for r in rankers], [r["agreement"] for r in rankers],
            title="Ranker agreement with held-out annotator picks", value_format=lambda v: f"{v:.0%}")),
        "rankers": rankers,
    }
    return render(request, "stats/dashboard.html", context)
