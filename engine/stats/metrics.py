"""Prometheus metrics at /metrics: request latency (middleware) and figures read from the database
at scrape time by a custom collector, with cheap indexed queries only (items by state from the
item queue index, judgements from the rollups plus the live tail, generation job items by state).

Run several web processes? Set PROMETHEUS_MULTIPROC_DIR and the request histograms of all of them
are merged (prometheus_client's multiprocess mode); the database figures are the same from any.

The figures name every project, so the page answers only a logged-in staff user or a scraper that
sends `Authorization: Bearer <METRICS_TOKEN>`; with no token set, only staff.
"""
from __future__ import annotations

import hmac
import os

from django.conf import settings
from django.db.models import Count, Sum
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from annotation.models import Item, Judgement, Lease
from engine.errors import error_body
from engine.models import Project
from engine.stats.models import AnnotatorDay, RollupState
from modelzoo.models import GenerationJobItem


class EngineCollector:
    """Reads the database on each scrape."""

    def describe(self):
        # Without this, registering would call collect() (and query the database) at import.
        return []

    def collect(self):
        slugs = dict(Project.objects.values_list("id", "slug"))
        items = GaugeMetricFamily("engine_items", "Items by state (queue depths).", labels=["project", "state"])
        for pid, state, n in Item.objects.values_list("project_id", "state").annotate(n=Count("id")).values_list(
                "project_id", "state", "n"):
            items.add_metric([slugs.get(pid, str(pid)), state], n)
        yield items

        leases = GaugeMetricFamily("engine_active_leases", "Items held by an annotator right now.",
                                   labels=["project"])
        for pid, n in Lease.objects.filter(state=Lease.State.ACTIVE).values_list("project_id").annotate(
                n=Count("id")).values_list("project_id", "n"):
            leases.add_metric([slugs.get(pid, str(pid))], n)
        yield leases

        # Judgements: the rollups up to their watermark plus the (small) live tail after it.
        judged = GaugeMetricFamily("engine_judgements", "Judgements made, by review status (corrections excluded).",
                                     labels=["project", "status"])
        watermark = dict(RollupState.objects.values_list("project_id", "last_judgement_id"))
        totals = {}
        for pid, acc, rej in AnnotatorDay.objects.values_list("project_id").annotate(
                a=Sum("accepted"), r=Sum("rejected")).values_list("project_id", "a", "r"):
            totals[pid] = {"accepted": acc or 0, "rejected": rej or 0}
        for pid in slugs:
            tail = Judgement.objects.filter(project_id=pid, id__gt=watermark.get(pid, 0)).exclude(
                status=Judgement.Status.SUPERSEDED).values_list("status").annotate(n=Count("id"))
            t = totals.setdefault(pid, {"accepted": 0, "rejected": 0})
            for status, n in tail:
                t[status] = t.get(status, 0) + n
        for pid, t in totals.items():
            for status, n in t.items():
                judged.add_metric([slugs.get(pid, str(pid)), status], n)
        yield judged

        generated = GaugeMetricFamily("engine_generation_items", "Generation job items by state.",
                                        labels=["project", "state"])
        candidates = CounterMetricFamily("engine_generated_candidates", "Candidates produced by generation jobs.",
                                         labels=["project"])
        per_project = {}
        for pid, state, n, done in GenerationJobItem.objects.values_list("job__project_id", "state").annotate(
                n=Count("id"), done=Sum("done")).values_list("job__project_id", "state", "n", "done"):
            generated.add_metric([slugs.get(pid, str(pid)), state], n)
            per_project[pid] = per_project.get(pid, 0) + (done or 0)
        for pid, n in per_project.items():
            candidates.add_metric([slugs.get(pid, str(pid))], n)
        yield generated
        yield candidates

        age = GaugeMetricFamily("engine_stats_rollup_age_seconds", "Seconds since the rollups were refreshed.",
                                labels=["project"])
        for pid, at in RollupState.objects.values_list("project_id", "refreshed_at"):
            if at is not None:
                age.add_metric([slugs.get(pid, str(pid))], (timezone.now() - at).total_seconds())
        yield age


_collector = EngineCollector()
REGISTRY.register(_collector)


def _refusal(request) -> JsonResponse | None:
    """None when the request may read the metrics, else the 401/403 to answer."""
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    token = settings.METRICS_TOKEN
    if scheme.lower() == "bearer" and credential:
        # compare_digest on bytes: constant time whatever the sent value's length or characters
        if token and hmac.compare_digest(credential.strip().encode(), token.encode()):
            return None
        response = JsonResponse(error_body("not_authenticated", "Invalid metrics token."), status=401)
    elif request.user.is_authenticated:
        if request.user.is_staff:
            return None
        return JsonResponse(error_body("forbidden", "The metrics are for staff users and the scraper's token."),
                            status=403)
    else:
        response = JsonResponse(error_body(
            "not_authenticated", "Log in as a staff user, or send 'Authorization: Bearer <METRICS_TOKEN>'."),
            status=401)
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


def metrics_view(request):
    refused = _refusal(request)
    if refused is not None:
        return refused
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(_collector)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
