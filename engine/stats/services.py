"""Writes of the stats app: the rollups, rebuilt a whole UTC day of a project at a time.

`rollups_refresh` finds the days touched since the last refresh (new judgements, reviews,
corrections) and rebuilds them from the source rows; rebuilding is idempotent, so a refresh
that dies half way is simply redone by the next one.
"""
from __future__ import annotations

import datetime as dt
import math
import time
from collections import defaultdict
from datetime import timedelta

from django.db import transaction
from django.db.models import Max, Q
from django.utils import timezone

from annotation.models import Comparison, Judgement
from engine.models import Project
from engine.stats.models import AnnotatorDay, CheckpointDay, PairDay, ProjectHour, RollupState

# Log histogram of durations: bucket b holds [HIST_RATIO**b, HIST_RATIO**(b+1)) milliseconds.
HIST_RATIO = 1.05
_LOG_RATIO = math.log(HIST_RATIO)
# Judgements can commit out of id order and reviews change old rows: every refresh also looks
# back this far, so nothing committed late is missed.
LOOKBACK = timedelta(minutes=10)
_CHUNK = 5000


def hist_bucket(ms: int) -> int:
    return int(math.floor(math.log(ms) / _LOG_RATIO)) if ms and ms > 1 else 0


def _hist_add(hist: dict, ms: int) -> None:
    key = str(hist_bucket(ms))
    hist[key] = hist.get(key, 0) + 1


def _day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time.min, tzinfo=dt.timezone.utc)
    return start, start + timedelta(days=1)


def _dirty_days(project: Project, state: RollupState) -> set[dt.date]:
    """UTC days whose rollups may have changed since the last refresh."""
    touched = Judgement.objects.filter(project=project)
    if state.refreshed_at is not None:
        since = state.refreshed_at - LOOKBACK
        touched = touched.filter(Q(id__gt=state.last_judgement_id) | Q(created_at__gte=since)
                                 | Q(reviewed_at__gte=since))
    rows = list(touched.values_list("created_at", "supersedes__created_at", "reviewed_at", "item_id"))
    days = set()
    reviewed_items = set()
    for created, superseded_created, reviewed_at, item_id in rows:
        days.add(created.astimezone(dt.timezone.utc).date())
        if superseded_created is not None:
            days.add(superseded_created.astimezone(dt.timezone.utc).date())
        if reviewed_at is not None and state.refreshed_at is not None:
            reviewed_items.add(item_id)
    if reviewed_items:
        # A review changes agreement figures of every judgement of the item, on their own days.
        for created in Judgement.objects.filter(item_id__in=reviewed_items).values_list("created_at", flat=True):
            days.add(created.astimezone(dt.timezone.utc).date())
    return days


def _rebuild_day(project: Project, day: dt.date) -> None:
    start, end = _day_bounds(day)
    judgements = list(
        Judgement.objects.filter(project=project, created_at__gte=start, created_at__lt=end)
        .values_list("id", "item_id", "item__round_id", "annotator_id", "status", "below_threshold",
                     "gold_correct", "time_spent_ms", "created_at", "winner_id", "winner__checkpoint_id")
    )
    annot: dict[tuple, dict] = {}
    hours: dict[tuple, dict] = {}
    ckpt: dict[tuple, list] = defaultdict(lambda: [0, 0])
    round_of_judgement: dict[int, tuple] = {}
    accepted_items = set()

    def annot_row(round_id, annotator_id):
        key = (round_id, annotator_id)
        if key not in annot:
            annot[key] = {"judgements": 0, "accepted": 0, "rejected": 0, "below_threshold": 0, "gold_total": 0,
                          "gold_correct": 0, "hours": set(), "item_ms_sum": 0, "item_ms_hist": {},
                          "comparisons": 0, "comparisons_equal": 0, "comparison_ms_count": 0,
                          "comparison_ms_hist": {}, "agree_total": 0, "agree_winner": 0}
        return annot[key]

    for (jid, item_id, round_id, annotator_id, status, below, gold_correct, ms, created, _winner,
         winner_ckpt) in judgements:
        if status == Judgement.Status.SUPERSEDED:
            continue
        accepted = status == Judgement.Status.ACCEPTED
        hour = created.astimezone(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
        round_of_judgement[jid] = (round_id, annotator_id, hour)
        a = annot_row(round_id, annotator_id)
        a["judgements"] += 1
        a["hours"].add(hour)
        a["item_ms_sum"] += ms
        _hist_add(a["item_ms_hist"], ms)
        h = hours.setdefault((round_id, hour), {"judgements": 0, "accepted": 0, "below_threshold": 0,
                                                "comparisons": 0, "annotators": set()})
        h["judgements"] += 1
        h["annotators"].add(annotator_id)
        if accepted:
            accepted_items.add(item_id)
            a["accepted"] += 1
            a["below_threshold"] += bool(below)
            h["accepted"] += 1
            h["below_threshold"] += bool(below)
            if gold_correct is not None:
                a["gold_total"] += 1
                a["gold_correct"] += bool(gold_correct)
            cell = ckpt[(round_id, winner_ckpt)]
            cell[0] += 1
            cell[1] += not below
        else:
            a["rejected"] += 1

    # Comparisons of the day's judgements: pace and "equal" share per annotator, and the
    # checkpoint-vs-checkpoint tallies behind the Bradley-Terry ratings (accepted judgements only).
    pairs: dict[tuple, list] = defaultdict(lambda: [0, 0, 0])
    comps = (
        Comparison.objects.filter(judgement__project=project, judgement__created_at__gte=start,
                                  judgement__created_at__lt=end)
        .exclude(judgement__status=Judgement.Status.SUPERSEDED)
        .values_list("judgement_id", "judgement__status", "outcome", "decided_ms",
                     "left__checkpoint_id", "right__checkpoint_id")
    )
    for jid, status, outcome, decided_ms, left_ck, right_ck in comps.iterator(chunk_size=_CHUNK):
        where = round_of_judgement.get(jid)
        if where is None:
            continue
        round_id, annotator_id, hour = where
        a = annot_row(round_id, annotator_id)
        a["comparisons"] += 1
        a["comparisons_equal"] += outcome == Comparison.Outcome.EQUAL
        if decided_ms is not None:
            a["comparison_ms_count"] += 1
            _hist_add(a["comparison_ms_hist"], decided_ms)
        hours[(round_id, hour)]["comparisons"] += 1
        if status == Judgement.Status.ACCEPTED and left_ck != right_ck:
            if outcome == Comparison.Outcome.EQUAL:
                slot = 1
            else:
                left_won = outcome == Comparison.Outcome.LEFT
                slot = 0 if left_won == (left_ck < right_ck) else 2
            lo, hi = sorted((left_ck, right_ck))
            pairs[(round_id, lo, hi)][slot] += 1

    # Agreement: each pair of annotators that judged the same item is counted once, on the day of
    # the later judgement, for both of them (the earlier annotator may get a row of zeros otherwise).
    day_accepted = {jid for jid, *_ in judgements if jid in round_of_judgement}
    by_item = defaultdict(list)
    items = list(accepted_items)
    for k in range(0, len(items), _CHUNK):
        for row in (Judgement.objects.filter(item_id__in=items[k:k + _CHUNK], status=Judgement.Status.ACCEPTED)
                    .values_list("id", "item_id", "item__round_id", "annotator_id", "winner_id")):
            by_item[row[1]].append(row)
    for rows in by_item.values():
        if len(rows) < 2:
            continue
        rows.sort()
        for n, (jid, _item, round_id, annotator_id, winner) in enumerate(rows):
            if jid not in day_accepted:
                continue
            for ojid, _oi, _or, other_annotator, other_winner in rows[:n]:
                if other_annotator == annotator_id:
                    continue
                same = winner == other_winner
                for who in (annotator_id, other_annotator):
                    a = annot_row(round_id, who)
                    a["agree_total"] += 1
                    a["agree_winner"] += same

    with transaction.atomic():
        AnnotatorDay.objects.filter(project=project, day=day).delete()
        ProjectHour.objects.filter(project=project, hour__gte=start, hour__lt=end).delete()
        CheckpointDay.objects.filter(project=project, day=day).delete()
        PairDay.objects.filter(project=project, day=day).delete()
        AnnotatorDay.objects.bulk_create([
            AnnotatorDay(project=project, round_id=round_id, annotator_id=annotator_id, day=day,
                         active_hours=len(v.pop("hours")), **v)
            for (round_id, annotator_id), v in annot.items()
        ])
        ProjectHour.objects.bulk_create([
            ProjectHour(project=project, round_id=round_id, hour=hour, judgements=v["judgements"],
                        accepted=v["accepted"], below_threshold=v["below_threshold"],
                        comparisons=v["comparisons"], annotators=len(v["annotators"]))
            for (round_id, hour), v in hours.items()
        ])
        CheckpointDay.objects.bulk_create([
            CheckpointDay(project=project, round_id=round_id, day=day, checkpoint_id=ck, winners=w, acceptable=ok)
            for (round_id, ck), (w, ok) in ckpt.items() if ck is not None
        ])
        PairDay.objects.bulk_create([
            PairDay(project=project, round_id=round_id, day=day, checkpoint_a_id=lo, checkpoint_b_id=hi,
                    a_wins=aw, ties=t, b_wins=bw)
            for (round_id, lo, hi), (aw, t, bw) in pairs.items()
        ])


def rollups_refresh(*, project_id: int | None = None, full: bool = False) -> dict:
    """Fold new and changed judgements into the rollups; returns {project slug: days rebuilt}."""
    projects = Project.objects.all() if project_id is None else Project.objects.filter(pk=project_id)
    done = {}
    for project in projects:
        t0 = time.perf_counter()
        started = timezone.now()
        state, _ = RollupState.objects.get_or_create(project=project)
        last_id = Judgement.objects.filter(project=project).aggregate(m=Max("id"))["m"] or 0
        if full:
            state.refreshed_at = None
            state.last_judgement_id = 0
        days = _dirty_days(project, state)
        if full:
            # Also clear days that no longer have any judgement.
            days |= set(AnnotatorDay.objects.filter(project=project).values_list("day", flat=True))
        for day in sorted(days):
            _rebuild_day(project, day)
        state.last_judgement_id = last_id
        state.refreshed_at = started
        state.days_rebuilt = len(days)
        state.duration_ms = int((time.perf_counter() - t0) * 1000)
        state.save(update_fields=["last_judgement_id", "refreshed_at", "days_rebuilt", "duration_ms"])
        done[project.slug] = len(days)
    return done
