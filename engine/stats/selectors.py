"""Reads behind the dashboard, and who may see them.

`dashboard_project_get` lets any member of a project see project-level figures;
`dashboard_project_get_for_lead` is the one check for annotator-level figures (leads and site
admins; anyone else gets `Forbidden`). Figures come from the rollups (`engine.stats.models`)
plus a few live, indexed queries for the last 24 hours and the queues, so each answers in a few
milliseconds on a project with millions of judgements.
"""
from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from itertools import repeat

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.utils import timezone

from annotation import selectors as qc
from annotation.models import Comparison, Item, ItemState, Judgement
from engine.bounds import day_checked
from engine.errors import NotFound, ValidationFailed
from engine.models import Membership, Project, Role, Round
from engine.selectors import project_get_for_user
from engine.stats import bradley_terry
from engine.stats.models import AnnotatorDay, CheckpointDay, PairDay, ProjectHour, RollupState
from engine.stats.services import HIST_RATIO
from modelzoo.models import Checkpoint, GenerationJob, GenerationJobItem, ProjectCheckpoint

LEAD = [Role.LEAD]
# Percentiles are exact (from the source rows) up to this many values, else read from the
# rollups' log histograms (within 2.5%); the answer says which.
EXACT_LIMIT = 5_000
BOOTSTRAP_ROUNDS = 200
ELO_CACHE_SECONDS = 24 * 3600
# Offline evaluation figures shown per checkpoint: our name -> key in Checkpoint.evaluation["model"].
EVAL_KEYS = {"chamfer": "chamfer", "fscore": "fscore@0.01", "voxel_iou": "voxel_iou@64",
             "rotation_error_deg": "rotation_error_deg"}
_JUDGED = [Judgement.Status.ACCEPTED, Judgement.Status.REJECTED]


# ------------------------------------------------------------------ access
def dashboard_project_get(user, slug: str) -> Project:
    """Project-level figures: any member of the project."""
    return project_get_for_user(user, slug)


def dashboard_project_get_for_lead(user, slug: str) -> Project:
    """Annotator-level figures: leads of the project and site admins only."""
    return project_get_for_user(user, slug, roles=LEAD)


@dataclass(frozen=True)
class Filters:
    round_id: int | None = None
    round_index: int | None = None
    annotator_id: int | None = None
    annotator: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None

    def key(self) -> str:
        return f"{self.round_id}:{self.annotator_id}:{self.since}:{self.until}"

    def as_query(self) -> str:
        parts = []
        if self.round_index is not None:
            parts.append(f"round={self.round_index}")
        if self.annotator:
            parts.append(f"annotator={self.annotator}")
        if self.since:
            parts.append(f"since={self.since}")
        if self.until:
            parts.append(f"until={self.until}")
        return "&".join(parts)


def filters_resolve(user, project: Project, *, round_index: int | None = None, annotator: str | None = None,
                    since: dt.date | None = None, until: dt.date | None = None) -> Filters:
    """Filters from the query string. Filtering by annotator is an annotator-level figure: leads only."""
    round_id = None
    if round_index is not None:
        round_id = Round.objects.filter(project=project, index=round_index).values_list("id", flat=True).first()
        if round_id is None:
            raise NotFound(f"Project '{project.slug}' has no round {round_index}.")
    annotator_id = None
    if annotator:
        dashboard_project_get_for_lead(user, project.slug)
        annotator_id = get_user_model().objects.filter(username=annotator).values_list("id", flat=True).first()
        if annotator_id is None:
            raise NotFound(f"No user '{annotator}'.")
    since, until = since and day_checked(since, "since"), until and day_checked(until, "until")
    if since and until and since > until:
        raise ValidationFailed(f"since ({since}) is after until ({until}); swap them.", code="bad_range")
    return Filters(round_id=round_id, round_index=round_index, annotator_id=annotator_id, annotator=annotator,
                   since=since, until=until)


def _filtered(qs, f: Filters, *, round_field: str, annotator_field: str | None, time_field: str, daily: bool):
    """`qs` narrowed to the filters' round, annotator (where the rows have one) and days (since
    and until inclusive; `daily` rows carry a date, the others a time)."""
    if f.round_id is not None:
        qs = qs.filter(**{round_field: f.round_id})
    if annotator_field and f.annotator_id is not None:
        qs = qs.filter(**{annotator_field: f.annotator_id})
    if f.since:
        qs = qs.filter(**{f"{time_field}__gte": f.since if daily else _start_of(f.since)})
    if f.until:
        qs = qs.filter(**({f"{time_field}__lte": f.until} if daily
                          else {f"{time_field}__lt": _start_of(f.until) + timedelta(days=1)}))
    return qs


def _by_day(qs, f: Filters, *, annotator: bool = True):
    """Daily rollup rows matching the filters (`annotator=False`: rows without an annotator)."""
    return _filtered(qs, f, round_field="round_id", annotator_field="annotator_id" if annotator else None,
                     time_field="day", daily=True)


def _by_hour(qs, f: Filters):
    """Hourly rollup rows of the project matching the filters (they have no annotator)."""
    return _filtered(qs, f, round_field="round_id", annotator_field=None, time_field="hour", daily=False)


def _start_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.min, tzinfo=dt.timezone.utc)


def _judgements(project: Project, f: Filters):
    """Source rows matching the filters (for exact percentiles on small selections)."""
    return _filtered(Judgement.objects.filter(project=project, status__in=_JUDGED), f, round_field="item__round_id",
                     annotator_field="annotator_id", time_field="created_at", daily=False)


# ------------------------------------------------------------------ percentiles
def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    values = sorted(values)
    pos = (len(values) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


def hist_percentile(hist: dict, q: float) -> float | None:
    """Percentile from a log histogram: the geometric middle of the bucket holding the rank."""
    n = sum(hist.values())
    if not n:
        return None
    rank = (n - 1) * q
    seen = 0
    for bucket in sorted(hist, key=int):
        seen += hist[bucket]
        if seen > rank:
            return HIST_RATIO ** (int(bucket) + 0.5)
    return HIST_RATIO ** (int(max(hist, key=int)) + 0.5)


def hist_merge(hists) -> dict:
    out: dict = defaultdict(int)
    for h in hists:
        for k, v in h.items():
            out[k] += v
    return out


def _seconds(ms_median, ms_p90, exact: bool) -> dict:
    r = lambda v: None if v is None else round(v / 1000.0, 2)  # noqa: E731
    return {"median": r(ms_median), "p90": r(ms_p90), "exact": exact}


def _pace(project: Project, f: Filters, rows: list, n_items: int, n_comparisons: int) -> tuple[dict, dict]:
    """Seconds per item and per comparison: exact when few, else from the histograms of `rows`."""
    if n_items <= EXACT_LIMIT:
        ms = list(_judgements(project, f).values_list("time_spent_ms", flat=True))
        per_item = _seconds(percentile(ms, 0.5), percentile(ms, 0.9), True)
    else:
        h = hist_merge(r["item_ms_hist"] for r in rows)
        per_item = _seconds(hist_percentile(h, 0.5), hist_percentile(h, 0.9), False)
    if n_comparisons <= EXACT_LIMIT:
        ms = list(Comparison.objects.filter(judgement__in=_judgements(project, f), decided_ms__isnull=False)
                  .values_list("decided_ms", flat=True))
        per_comparison = _seconds(percentile(ms, 0.5), percentile(ms, 0.9), True)
    else:
        h = hist_merge(r["comparison_ms_hist"] for r in rows)
        per_comparison = _seconds(hist_percentile(h, 0.5), hist_percentile(h, 0.9), False)
    return per_item, per_comparison


def rollup_state(project: Project) -> dict:
    state = RollupState.objects.filter(project=project).first()
    if state is None or state.refreshed_at is None:
        return {"refreshed_at": None, "age_seconds": None, "last_judgement_id": 0, "stale": True}
    age = (timezone.now() - state.refreshed_at).total_seconds()
    return {"refreshed_at": state.refreshed_at, "age_seconds": round(age), "last_judgement_id":
            state.last_judgement_id, "duration_ms": state.duration_ms, "stale": age > 300}


# ------------------------------------------------------------------ memo per refresh
MEMO_SECONDS = 3600


def _memo(project: Project, kind: str, f: Filters, compute):
    """Figures derived from the rollups change only when a refresh lands: cache them per refresh
    (keyed on its time and watermark). The beat task warms the unfiltered ones right after."""
    state = RollupState.objects.filter(project=project).values_list("refreshed_at", "last_judgement_id").first()
    key = f"stats:{kind}:v1:{project.pk}:{f.key()}:{state[0].timestamp() if state and state[0] else 0}:" \
          f"{state[1] if state else 0}"
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, MEMO_SECONDS)
    return value


# ------------------------------------------------------------------ throughput
def queue_depths(project: Project, f: Filters) -> dict:
    """Items by state, live (the item queue index answers it)."""
    qs = Item.objects.filter(project=project)
    if f.round_id is not None:
        qs = qs.filter(round_id=f.round_id)
    counts = dict(qs.values_list("state").annotate(n=Count("id")).values_list("state", "n"))
    return {state: counts.get(state, 0) for state in ItemState.values}


def throughput(project: Project, f: Filters, *, now: dt.datetime | None = None) -> dict:
    now = now or timezone.now()
    history = _memo(project, "throughput", f, lambda: _throughput_history(project, f))
    return {**history, **_live(project, f, now), "queue": queue_depths(project, f),
            "rollups": rollup_state(project)}


def _live(project: Project, f: Filters, now: dt.datetime) -> dict:
    """The last hour and day, straight from the judgements (indexed on project, status, created_at
    and on project, annotator, created_at)."""
    recent = Judgement.objects.filter(project=project, status__in=_JUDGED, created_at__gte=now - timedelta(days=1))
    if f.round_id is not None:
        recent = recent.filter(item__round_id=f.round_id)
    if f.annotator_id is not None:
        recent = recent.filter(annotator_id=f.annotator_id)
    counts = recent.aggregate(last_24h=Count("id"), last_1h=Count("id", filter=Q(created_at__gte=now - timedelta(hours=1))))
    # Active annotators: one index probe per annotator of the project, not a scan of the day.
    people = Membership.objects.filter(project=project, role=Role.ANNOTATOR)
    if f.annotator_id is not None:
        people = people.filter(user_id=f.annotator_id)

    def active(since):
        worked = Judgement.objects.filter(project=project, annotator_id=OuterRef("user_id"), created_at__gte=since)
        if f.round_id is not None:
            worked = worked.filter(item__round_id=f.round_id)
        return people.filter(Exists(worked)).values("user_id").distinct().count()

    return {"last_1h": counts["last_1h"], "last_24h": counts["last_24h"],
            "active_annotators": {"last_1h": active(now - timedelta(hours=1)),
                                  "last_24h": active(now - timedelta(days=1))}}


def _throughput_history(project: Project, f: Filters) -> dict:
    days = _by_day(AnnotatorDay.objects.filter(project=project), f)
    if f.annotator_id is None:
        hours = _by_hour(ProjectHour.objects.filter(project=project), f)
        active_hours = hours.values("hour").distinct().count()
    else:
        active_hours = None
    rows = list(days.values("round_id", "judgements", "active_hours", "item_ms_hist", "comparison_ms_hist",
                            "comparisons"))
    judged = sum(r["judgements"] for r in rows)
    n_comparisons = sum(r["comparisons"] for r in rows)
    if active_hours is None:  # one annotator: their own active hours
        active_hours = sum(r["active_hours"] for r in rows)
    per_item, per_comparison = _pace(project, f, rows, judged, n_comparisons)

    per_round = []
    round_index = dict(Round.objects.filter(project=project).values_list("id", "index"))
    hours_by_round = dict(
        _by_hour(ProjectHour.objects.filter(project=project), f).values_list("round_id")
        .annotate(n=Count("id")).values_list("round_id", "n")
    ) if f.annotator_id is None else {}
    by_round = defaultdict(lambda: {"judgements": 0, "active_hours": 0})
    for r in rows:
        b = by_round[r["round_id"]]
        b["judgements"] += r["judgements"]
        b["active_hours"] += r["active_hours"]
    for round_id, b in sorted(by_round.items(), key=lambda kv: round_index.get(kv[0], 0)):
        hrs = hours_by_round.get(round_id, b["active_hours"])
        per_round.append({"round": round_index.get(round_id), "judgements": b["judgements"], "active_hours": hrs,
                          "items_per_hour": round(b["judgements"] / hrs, 2) if hrs else None})
    return {
        "judgements": judged,
        "comparisons": n_comparisons,
        "active_hours": active_hours,
        "items_per_active_hour": round(judged / active_hours, 2) if active_hours else None,
        "seconds_per_item": per_item,
        "seconds_per_comparison": per_comparison,
        "per_round": per_round,
    }


def timeseries(project: Project, f: Filters, *, bucket: str = "day") -> list[dict]:
    """Judgements per hour or per day (hourly series: project-wide; per annotator: daily)."""
    if bucket == "hour" and f.annotator_id is None:
        rows = (_by_hour(ProjectHour.objects.filter(project=project), f).values("hour")
                .annotate(judgements=Sum("judgements"), accepted=Sum("accepted"),
                          below_threshold=Sum("below_threshold"), comparisons=Sum("comparisons"),
                          annotators=Sum("annotators"))
                .order_by("hour"))
        return [{"t": r["hour"], **{k: r[k] for k in ("judgements", "accepted", "below_threshold", "comparisons",
                                                         "annotators")}} for r in rows]
    if bucket not in ("day", "hour"):
        raise ValidationFailed("bucket must be 'hour' or 'day'.", code="bad_bucket")
    # Rows of annotators credited only with agreement that day (no judgements) are not counted.
    rows = (_by_day(AnnotatorDay.objects.filter(project=project), f).values("day")
            .annotate(n=Sum("judgements"), acc=Sum("accepted"), below=Sum("below_threshold"),
                      comps=Sum("comparisons"),
                      people=Count("annotator_id", distinct=True, filter=Q(judgements__gt=0)))
            .order_by("day"))
    return [{"t": r["day"], "judgements": r["n"], "accepted": r["acc"], "below_threshold": r["below"],
             "comparisons": r["comps"], "annotators": r["people"]} for r in rows]


# ------------------------------------------------------------------ quality
def annotator_table(project: Project, f: Filters) -> list[dict]:
    """Per annotator (leads only: fetch the project with `dashboard_project_get_for_lead`)."""
    return _memo(project, "annotators", f, lambda: _annotator_table(project, f))


def _annotator_table(project: Project, f: Filters) -> list[dict]:
    rows = list(_by_day(AnnotatorDay.objects.filter(project=project), f).values(
        "annotator_id", "judgements", "accepted", "rejected", "below_threshold", "gold_total", "gold_correct",
        "active_hours", "item_ms_sum", "item_ms_hist", "comparisons", "comparisons_equal", "comparison_ms_hist",
        "agree_total", "agree_winner"))
    sums = defaultdict(lambda: defaultdict(int))
    hists = defaultdict(list)
    comparison_hists = defaultdict(list)
    for r in rows:
        s = sums[r["annotator_id"]]
        for k, v in r.items():
            if k not in ("annotator_id", "item_ms_hist", "comparison_ms_hist"):
                s[k] += v
        hists[r["annotator_id"]].append(r["item_ms_hist"])
        comparison_hists[r["annotator_id"]].append(r["comparison_ms_hist"])
    total = sum(s["judgements"] for s in sums.values())
    exact = defaultdict(list)
    if total <= EXACT_LIMIT:
        for uid, ms in _judgements(project, f).values_list("annotator_id", "time_spent_ms"):
            exact[uid].append(ms)
    names = dict(get_user_model().objects.filter(pk__in=sums).values_list("pk", "username"))
    ratio = lambda a, b: round(a / b, 4) if b else None  # noqa: E731
    out = []
    for uid, s in sorted(sums.items(), key=lambda kv: names.get(kv[0], "")):
        if total <= EXACT_LIMIT:
            median_ms = percentile(exact.get(uid, []), 0.5)
        else:
            median_ms = hist_percentile(hist_merge(hists[uid]), 0.5)
        comparison_ms = hist_percentile(hist_merge(comparison_hists[uid]), 0.5)
        comparison_ms = None if comparison_ms is None else round(comparison_ms)
        out.append({
            "annotator": names.get(uid), "judgements": s["judgements"], "accepted": s["accepted"],
            "rejected": s["rejected"], "rejected_share": ratio(s["rejected"], s["judgements"]),
            "active_hours": s["active_hours"], "items_per_hour": ratio(s["judgements"], s["active_hours"]),
            "median_seconds_per_item": None if median_ms is None else round(median_ms / 1000, 2),
            "mean_seconds_per_item": ratio(s["item_ms_sum"] / 1000, s["judgements"]),
            "gold_total": s["gold_total"], "gold_accuracy": ratio(s["gold_correct"], s["gold_total"]),
            "agreement_pairs": s["agree_total"], "agreement": ratio(s["agree_winner"], s["agree_total"]),
            "comparisons": s["comparisons"], "equal_share": ratio(s["comparisons_equal"], s["comparisons"]),
            "below_threshold_share": ratio(s["below_threshold"], s["accepted"]),
            "median_ms_per_comparison": comparison_ms,
            "outlier_flags": _outlier_flags(s, comparison_ms),
        })
    return out


def _outlier_flags(s: dict, median_comparison_ms: float | None = None) -> list[str]:
    """annotation.selectors.annotator_quality's outlier rules, from the rollups: implausibly fast
    comparisons, "equal" nearly always, gold answers mostly wrong (the side a person favours is
    not in the rollups: see the annotation API's quality figures)."""
    flags = []
    if s["comparisons"] >= qc.OUTLIER_MIN_COMPARISONS:
        if median_comparison_ms is not None and median_comparison_ms < qc.OUTLIER_FAST_MEDIAN_MS:
            flags.append("too_fast")
        if s["comparisons_equal"] / s["comparisons"] > qc.OUTLIER_EQUAL_SHARE:
            flags.append("always_equal")
    if s["gold_total"] >= qc.OUTLIER_MIN_GOLD and s["gold_correct"] / s["gold_total"] < qc.OUTLIER_GOLD_ACCURACY:
        flags.append("low_gold_accuracy")
    return flags


def round_figures(project: Project) -> dict[int, dict]:
    """{round index: {"judgements", "acceptance_rate"}} from the rollups: what the console's rounds
    pages show beside each round's live item counts (engine.rounds.selectors.round_status)."""
    return {r["round"]: {"judgements": r["judgements"], "acceptance_rate": r["acceptance_rate"]}
            for r in acceptance(project, Filters())["per_round"]}


def acceptance(project: Project, f: Filters) -> dict:
    """Acceptance (winner rated >= alpha) per round and per checkpoint; hard-case rate per round."""
    ratio = lambda a, b: round(a / b, 4) if b else None  # noqa: E731
    rounds = {r.id: r for r in Round.objects.filter(project=project)}
    per_round = (_by_day(AnnotatorDay.objects.filter(project=project), f).values("round_id")
                 .annotate(accepted=Sum("accepted"), below=Sum("below_threshold")))
    items = Item.objects.filter(project=project)
    if f.round_id is not None:
        items = items.filter(round_id=f.round_id)
    item_counts = defaultdict(dict)
    for round_id, state, n in items.values_list("round_id", "state").annotate(n=Count("id")).values_list(
            "round_id", "state", "n"):
        item_counts[round_id][state] = n
    round_rows = []
    for r in sorted(per_round, key=lambda r: rounds[r["round_id"]].index):
        rnd = rounds[r["round_id"]]
        states = item_counts.get(rnd.id, {})
        finished = states.get(ItemState.DONE, 0) + states.get(ItemState.HARD_CASE, 0)
        round_rows.append({
            "round": rnd.index, "alpha": rnd.quality_threshold, "judgements": r["accepted"],
            "acceptable": r["accepted"] - r["below"], "acceptance_rate": ratio(r["accepted"] - r["below"], r["accepted"]),
            "items_finished": finished, "hard_cases": states.get(ItemState.HARD_CASE, 0),
            "hard_case_rate": ratio(states.get(ItemState.HARD_CASE, 0), finished),
        })
    per_ck = (_by_day(CheckpointDay.objects.filter(project=project), f, annotator=False).values("checkpoint_id")
              .annotate(winners=Sum("winners"), acceptable=Sum("acceptable")))
    names = {c.id: str(c) for c in Checkpoint.objects.filter(pk__in=[r["checkpoint_id"] for r in per_ck])}
    ck_rows = [{"checkpoint": names.get(r["checkpoint_id"]), "winners": r["winners"], "acceptable": r["acceptable"],
                "acceptance_rate": ratio(r["acceptable"], r["winners"])}
               for r in sorted(per_ck, key=lambda r: r["checkpoint_id"])]
    return {"per_round": round_rows, "per_checkpoint": ck_rows}


# ------------------------------------------------------------------ model progress
def _anchor(checkpoints: dict[int, Checkpoint]) -> int | None:
    """The bootstrap checkpoint: the oldest root of the lineage among the rated ones."""
    if not checkpoints:
        return None
    roots = [c for c in checkpoints.values() if c.parent_id is None or c.parent_id not in checkpoints]
    return min(roots or checkpoints.values(), key=lambda c: (c.created_at, c.id)).id


def eval_figures(checkpoint: Checkpoint) -> dict:
    ev = checkpoint.evaluation or {}
    metrics = ev.get("model", ev) if isinstance(ev.get("model", ev), dict) else {}
    return {name: (round(metrics[k], 4) if isinstance(metrics.get(k), (int, float)) else None)
            for name, k in EVAL_KEYS.items()}


def ratings(project: Project, f: Filters) -> dict:
    """Bradley-Terry Elo per checkpoint with bootstrap 95% intervals, win rate vs parent, offline eval.

    The fit is cached, keyed on the filters and the comparison count and rollup watermark, so
    it is recomputed only when new comparisons were folded in.
    """
    cells = list(_by_day(PairDay.objects.filter(project=project), f, annotator=False)
                 .values("checkpoint_a_id", "checkpoint_b_id")
                 .annotate(a=Sum("a_wins"), t=Sum("ties"), b=Sum("b_wins")))
    n = sum(c["a"] + c["t"] + c["b"] for c in cells)
    state = RollupState.objects.filter(project=project).values_list("last_judgement_id", flat=True).first() or 0
    key = f"stats:elo:v1:{project.pk}:{f.key()}:{n}:{state}"
    cached = cache.get(key)
    if cached is not None:
        return cached
    result = _ratings_compute(project, cells)
    result["comparisons"] = n
    cache.set(key, result, ELO_CACHE_SECONDS)
    return result


def _ratings_compute(project: Project, cells: list[dict]) -> dict:
    def tuples(cell):
        a, b = cell["checkpoint_a_id"], cell["checkpoint_b_id"]
        yield from repeat((a, b, 1.0), cell["a"])
        yield from repeat((a, b, 0.5), cell["t"])
        yield from repeat((a, b, 0.0), cell["b"])

    ids = {c["checkpoint_a_id"] for c in cells} | {c["checkpoint_b_id"] for c in cells}
    ids |= set(ProjectCheckpoint.objects.filter(project=project).values_list("checkpoint_id", flat=True))
    checkpoints = {c.id: c for c in Checkpoint.objects.filter(pk__in=ids)}
    rated = {i: c for i, c in checkpoints.items() if any(i in (x["checkpoint_a_id"], x["checkpoint_b_id"])
                                                           for x in cells)}
    anchor = _anchor(rated)
    fitted = {r.model: r for r in bradley_terry.fit_ratings(
        (t for c in cells for t in tuples(c)), anchor=anchor, bootstrap_rounds=BOOTSTRAP_ROUNDS)}
    by_pair = {(c["checkpoint_a_id"], c["checkpoint_b_id"]): c for c in cells}
    rows = []
    for cid, ck in sorted(checkpoints.items(), key=lambda kv: (kv[1].created_at, kv[0])):
        r = fitted.get(cid)
        vs_parent = None
        if ck.parent_id is not None:
            cell = by_pair.get(tuple(sorted((cid, ck.parent_id))))
            if cell:
                vs_parent = bradley_terry.win_rate(tuples(cell), cid, ck.parent_id)
                if vs_parent["win_rate"] is not None:
                    vs_parent["win_rate"] = round(vs_parent["win_rate"], 4)
                if vs_parent["ratio"] is not None:
                    vs_parent["ratio"] = round(vs_parent["ratio"], 2)
        rows.append({
            "checkpoint": str(ck), "checkpoint_id": cid,
            "parent": str(checkpoints[ck.parent_id]) if ck.parent_id in checkpoints else (
                None if ck.parent_id is None else f"#{ck.parent_id}"),
            "anchor": cid == anchor,
            "elo": None if r is None else round(r.rating, 1),
            "ci_low": None if r is None else round(r.ci_low, 1),
            "ci_high": None if r is None else round(r.ci_high, 1),
            "comparisons": 0 if r is None else r.comparisons,
            "vs_parent": vs_parent,
            "eval": eval_figures(ck),
        })
    return {"anchor": str(checkpoints[anchor]) if anchor else None, "bootstrap_rounds": BOOTSTRAP_ROUNDS,
            "checkpoints": rows}


# ------------------------------------------------------------------ generation and workers
def generation_jobs(project: Project, f: Filters, *, limit: int = 20) -> list[dict]:
    jobs = GenerationJob.objects.filter(project=project)
    if f.round_id is not None:
        jobs = jobs.filter(round_id=f.round_id)
    jobs = jobs.select_related("round").order_by("-started_at", "-id")[:limit]
    jobs = list(jobs)

    counts = defaultdict(dict)
    for job_id, state, n, done in (GenerationJobItem.objects.filter(job__in=jobs).values_list("job_id", "state")
                                   .annotate(n=Count("id"), done=Sum("done"))
                                   .values_list("job_id", "state", "n", "done")):
        counts[job_id][state] = (n, done or 0)
    out = []
    for job in jobs:
        c = counts.get(job.id, {})
        done_items = c.get("done", (0, 0))[0]
        failed = c.get("failed", (0, 0))[0]
        candidates = sum(v[1] for v in c.values())
        seconds = ((job.finished_at or timezone.now()) - job.started_at).total_seconds()
        out.append({
            "job": job.id, "round": job.round.index, "state": job.state, "started_at": job.started_at,
            "finished_at": job.finished_at, "items": job.total_items, "items_done": done_items,
            "items_failed": failed, "items_pending": c.get("pending", (0, 0))[0],
            "candidates": candidates, "candidates_planned": job.total_candidates,
            "progress": round((done_items + failed) / job.total_items, 4) if job.total_items else None,
            "candidates_per_minute": round(candidates / seconds * 60, 1) if seconds > 0 else None,
        })
    return out


def ranker_agreement(project) -> list[dict]:
    """The project's rankers (checkpoints of role "ranker" it sees), oldest first, with the round whose
    DPO snapshot each learnt from and its held-out agreement with the annotators' picks."""
    from modelzoo.models import Checkpoint

    rows = []
    for cp in (Checkpoint.objects.filter(role=Checkpoint.Role.RANKER, shares__project=project)
               .order_by("created_at", "id")):
        rows.append({"checkpoint": str(cp), "round": cp.lineage.get("round"),
                     "snapshot": cp.lineage.get("dpo_snapshot_id"),
                     "agreement": cp.evaluation.get("held_out_agreement"),
                     "held_out_pairs": cp.evaluation.get("held_out_pairs")})
    return rows
