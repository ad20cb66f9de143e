"""Thin DRF views of the dashboard figures, under /api/v1/projects/<slug>/stats/.

Every view: parse the filters, fetch the project through a selector (which checks the role:
annotator-level figures are for leads and site admins), return the figure. Add `?format=csv`
to any of them for its table as CSV.
"""
from __future__ import annotations

import csv
import io

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from engine.apis import parse
from engine.bounds import DayField, PositiveIntegerField
from engine.stats import health, selectors


def flatten(row: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in row.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = ";".join(str(x) for x in v)
        else:
            out[key] = v
    return out


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        rows = data if isinstance(data, list) else [data]
        rows = [flatten(r) if isinstance(r, dict) else {"value": r} for r in rows]
        view = (renderer_context or {}).get("view")
        columns: list[str] = list(getattr(view, "csv_columns", []))  # the header of an empty table
        for r in rows:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: "" if v is None else v for k, v in r.items()})
        return buf.getvalue().encode("utf-8")


class FiltersIn(serializers.Serializer):
    round = PositiveIntegerField(required=False, help_text="Round index (1, 2, ...).")
    annotator = serializers.CharField(required=False, max_length=150, help_text="Username; leads only.")
    since = DayField(required=False, help_text="First UTC day, inclusive (YYYY-MM-DD).")
    until = DayField(required=False, help_text="Last UTC day, inclusive (YYYY-MM-DD).")
    bucket = serializers.ChoiceField(choices=["hour", "day"], required=False, default="day")
    # Read by DRF's content negotiation; here so that an empty or unknown format is a 400, not JSON.
    format = serializers.ChoiceField(choices=["json", "csv", "api"], required=False,
                                     help_text="csv: the figure's table as CSV; api: DRF's browsable page.")

    def validate(self, attrs):
        # A form field left empty counts as absent in DRF; DRF's negotiation would answer JSON.
        if self.initial_data.get("format") == "":
            raise serializers.ValidationError({"format": ["Empty: use json or csv, or leave it out."]})
        return attrs


class FigureApi(APIView):
    """A figure of a project: `figure()` returns the JSON body, `table()` the rows of its CSV."""

    renderer_classes = [JSONRenderer, BrowsableAPIRenderer, CSVRenderer]
    lead_only = False
    name = "figure"
    csv_columns: list[str] = []

    def figure(self, project, f: selectors.Filters, params: dict):
        raise NotImplementedError

    def table(self, data) -> list[dict]:
        return data if isinstance(data, list) else [data]

    @extend_schema(parameters=[FiltersIn], responses={
        (200, "application/json"): OpenApiTypes.ANY,
        (200, "text/csv"): OpenApiTypes.STR,
        (200, "text/html"): OpenApiTypes.STR,  # ?format=api
    })
    def get(self, request, slug: str):
        params = parse(FiltersIn, request.query_params)
        if self.lead_only:
            project = selectors.dashboard_project_get_for_lead(request.user, slug)
        else:
            project = selectors.dashboard_project_get(request.user, slug)
        f = selectors.filters_resolve(request.user, project, round_index=params.get("round"),
                                      annotator=params.get("annotator"), since=params.get("since"),
                                      until=params.get("until"))
        data = self.figure(project, f, params)
        if request.accepted_renderer.format == "csv":
            response = Response(self.table(data))
            response["Content-Disposition"] = f'attachment; filename="{slug}-{self.name}.csv"'
            return response
        return Response(data)


class ThroughputApi(FigureApi):
    """Judgements, items per active hour, seconds per item and comparison, active annotators,
    queue depths; the CSV is the per-round table."""

    name = "throughput"
    csv_columns = ["round", "judgements", "active_hours", "items_per_hour"]

    def figure(self, project, f, params):
        return selectors.throughput(project, f)

    def table(self, data):
        return data["per_round"]


class QueueApi(FigureApi):
    name = "queue"

    def figure(self, project, f, params):
        return [{"state": s, "items": n} for s, n in selectors.queue_depths(project, f).items()]


class TimeseriesApi(FigureApi):
    name = "timeseries"
    csv_columns = ["t", "judgements", "accepted", "below_threshold", "comparisons", "annotators"]

    def figure(self, project, f, params):
        return selectors.timeseries(project, f, bucket=params["bucket"])


class AnnotatorsApi(FigureApi):
    """Per annotator: gold accuracy, agreement, share of "equal", pace, rejected. Leads only."""

    name = "annotators"
    csv_columns = ["annotator", "judgements", "accepted", "rejected", "rejected_share", "active_hours",
                   "items_per_hour", "median_seconds_per_item", "mean_seconds_per_item", "gold_total",
                   "gold_accuracy", "agreement_pairs", "agreement", "comparisons", "equal_share",
                   "below_threshold_share", "median_ms_per_comparison"]
    lead_only = True

    def figure(self, project, f, params):
        return selectors.annotator_table(project, f)


class AcceptanceRoundsApi(FigureApi):
    name = "acceptance-rounds"
    csv_columns = ["round", "alpha", "judgements", "acceptable", "acceptance_rate", "items_finished", "hard_cases",
                   "hard_case_rate"]

    def figure(self, project, f, params):
        return selectors.acceptance(project, f)["per_round"]


class AcceptanceCheckpointsApi(FigureApi):
    name = "acceptance-checkpoints"
    csv_columns = ["checkpoint", "winners", "acceptable", "acceptance_rate"]

    def figure(self, project, f, params):
        return selectors.acceptance(project, f)["per_checkpoint"]


class RatingsApi(FigureApi):
    """Bradley-Terry Elo per checkpoint (anchor 1000) with bootstrap 95% CIs, win rate vs parent,
    offline evaluation; the CSV is the per-checkpoint table."""

    name = "ratings"

    def figure(self, project, f, params):
        return selectors.ratings(project, f)

    def table(self, data):
        return data["checkpoints"]


class GenerationApi(FigureApi):
    name = "generation"
    csv_columns = ["job", "round", "state", "started_at", "finished_at", "items", "items_done", "items_failed",
                   "items_pending", "candidates", "candidates_planned", "progress", "candidates_per_minute"]

    def figure(self, project, f, params):
        return selectors.generation_jobs(project, f)


class WorkersApi(FigureApi):
    """Celery workers and queue lengths, with a warning when no worker answers."""

    name = "workers"

    def figure(self, project, f, params):
        return health.celery_health()

    def table(self, data):
        return [{"worker": w["name"], "active_tasks": w["active_tasks"], "queues": w["queues"]}
                for w in data["workers"]] or [{"worker": None, "warning": " ".join(data["warnings"])}]
