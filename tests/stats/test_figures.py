"""Throughput, quality and model-progress figures against values computed by hand (conftest.py)."""
from __future__ import annotations

import datetime as dt

import pytest

from annotation.models import Judgement
from engine.stats import selectors, services
from engine.stats.models import AnnotatorDay

pytestmark = pytest.mark.django_db


def get(api, user, project, figure, **params):
    response = api(user).get(f"/api/v1/projects/{project.slug}/stats/{figure}", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_throughput_matches_hand_computed(world, api):
    t = get(api, world["lead"], world["project"], "throughput")
    assert t["judgements"] == 5 and t["comparisons"] == 5
    assert t["active_hours"] == 3  # 10:00, 11:00, 12:00
    assert t["items_per_active_hour"] == 1.67
    # seconds per item: 20 30 40 60 100 -> median 40, p90 = 60 + 0.6 * 40
    assert t["seconds_per_item"] == {"median": 40.0, "p90": 84.0, "exact": True}
    # seconds per comparison: 1 2 3 4 5 -> median 3, p90 4.6
    assert t["seconds_per_comparison"] == {"median": 3.0, "p90": 4.6, "exact": True}
    assert t["per_round"] == [
        {"round": 1, "judgements": 4, "active_hours": 2, "items_per_hour": 2.0},
        {"round": 2, "judgements": 1, "active_hours": 1, "items_per_hour": 1.0},
    ]
    assert t["queue"]["done"] == 2 and t["queue"]["hard_case"] == 1 and t["queue"]["ready"] == 1


def test_live_figures_last_hour_and_day(world):
    now = dt.datetime(2025, 1, 6, 12, 30, tzinfo=dt.timezone.utc)
    t = selectors.throughput(world["project"], selectors.Filters(), now=now)
    assert t["last_1h"] == 1 and t["last_24h"] == 5  # alice 12:10 within the hour
    assert t["active_annotators"] == {"last_1h": 1, "last_24h": 2}


def test_filters_by_round_annotator_and_dates(world, api):
    p, lead = world["project"], world["lead"]
    r2 = get(api, lead, p, "throughput", round=2)
    assert r2["judgements"] == 1 and r2["seconds_per_item"]["median"] == 60.0
    alice = get(api, lead, p, "throughput", annotator="alice")
    assert alice["judgements"] == 3 and alice["active_hours"] == 2 and alice["seconds_per_item"]["median"] == 40.0
    assert get(api, lead, p, "throughput", since="2025-01-07")["judgements"] == 0
    assert get(api, lead, p, "throughput", since="2025-01-06", until="2025-01-06")["judgements"] == 5
    bad = api(lead).get(f"/api/v1/projects/{p.slug}/stats/throughput", {"round": 9})
    assert bad.status_code == 404


def test_timeseries_by_hour_and_day(world, api):
    hours = get(api, world["lead"], world["project"], "timeseries", bucket="hour")
    assert [(h["t"][11:16], h["judgements"], h["annotators"]) for h in hours] == [
        ("10:00", 3, 2), ("11:00", 1, 1), ("12:00", 1, 1)]
    days = get(api, world["lead"], world["project"], "timeseries", bucket="day")
    assert days == [{"t": "2025-01-06", "judgements": 5, "accepted": 4, "below_threshold": 1, "comparisons": 5,
                     "annotators": 2}]


def test_annotator_quality(world, api):
    rows = {r["annotator"]: r for r in get(api, world["lead"], world["project"], "annotators")}
    a, b = rows["alice"], rows["bob"]
    assert (a["judgements"], a["active_hours"], a["items_per_hour"], a["median_seconds_per_item"]) == (3, 2, 1.5, 40.0)
    assert (b["judgements"], b["rejected"], b["items_per_hour"], b["median_seconds_per_item"]) == (2, 1, 1.0, 65.0)
    assert a["gold_accuracy"] == 0.0 and b["gold_accuracy"] == 1.0
    assert a["agreement"] == 1.0 and a["agreement_pairs"] == 1 and b["agreement"] == 1.0  # same winner on i1
    assert a["equal_share"] == 0.3333 and b["equal_share"] == 0.0
    assert a["below_threshold_share"] == 0.3333


def test_acceptance_per_round_and_checkpoint(world, api):
    rounds = get(api, world["lead"], world["project"], "acceptance/rounds")
    assert rounds == [
        {"round": 1, "alpha": 3, "judgements": 3, "acceptable": 2, "acceptance_rate": 0.6667,
         "items_finished": 2, "hard_cases": 1, "hard_case_rate": 0.5},
        {"round": 2, "alpha": 4, "judgements": 1, "acceptable": 1, "acceptance_rate": 1.0,
         "items_finished": 1, "hard_cases": 0, "hard_case_rate": 0.0},
    ]
    cks = get(api, world["lead"], world["project"], "acceptance/checkpoints")
    assert cks == [{"checkpoint": "builtin:v1", "winners": 1, "acceptable": 0, "acceptance_rate": 0.0},
                   {"checkpoint": "builtin:v2", "winners": 3, "acceptable": 3, "acceptance_rate": 1.0}]


def test_ratings_anchor_win_rate_vs_parent_and_eval(world, api):
    r = get(api, world["lead"], world["project"], "ratings")
    assert r["anchor"] == "builtin:v1" and r["comparisons"] == 4  # the rejected judgement is left out
    v1, v2 = r["checkpoints"]
    assert v1["elo"] == 1000.0 and v1["anchor"]
    assert v2["elo"] > 1000 and v2["ci_low"] <= v2["elo"] <= v2["ci_high"]
    # ck2 vs its parent: 2 wins, 1 tie, 1 loss -> (2 + 0.5) / 4, ratio 2:1
    assert v2["vs_parent"] == {"wins": 2, "ties": 1, "losses": 1, "comparisons": 4, "win_rate": 0.625, "ratio": 2.0}
    assert v1["eval"] == {"chamfer": 0.05, "fscore": 0.31, "voxel_iou": 0.42, "rotation_error_deg": 12.0}


def test_ratings_fit_is_cached_until_new_comparisons(world, monkeypatch):
    calls = []
    real = selectors._ratings_compute
    monkeypatch.setattr(selectors, "_ratings_compute", lambda *a: calls.append(1) or real(*a))
    selectors.ratings(world["project"], selectors.Filters())
    selectors.ratings(world["project"], selectors.Filters())
    assert len(calls) == 1


def test_refresh_is_incremental_and_follows_reviews(world, api):
    p = world["project"]
    rows_before = AnnotatorDay.objects.filter(project=p).count()
    assert services.rollups_refresh(project_id=p.pk)[p.slug] >= 0
    assert AnnotatorDay.objects.filter(project=p).count() == rows_before  # idempotent
    j = Judgement.objects.get(annotator=world["alice"], item=world["items"]["i2"])
    Judgement.objects.filter(pk=j.pk).update(status=Judgement.Status.REJECTED,
                                             reviewed_at=dt.datetime.now(dt.timezone.utc))
    services.rollups_refresh(project_id=p.pk)
    rows = {r["annotator"]: r for r in get(api, world["lead"], p, "annotators")}
    assert rows["alice"]["rejected"] == 1 and rows["alice"]["gold_total"] == 0
    assert services.rollups_refresh(project_id=p.pk, full=True)[p.slug] == 1


def test_histogram_percentiles_within_five_percent(world, monkeypatch):
    monkeypatch.setattr(selectors, "EXACT_LIMIT", 0)
    t = selectors.throughput(world["project"], selectors.Filters())
    assert not t["seconds_per_item"]["exact"]
    assert abs(t["seconds_per_item"]["median"] - 40.0) / 40.0 < 0.05
    assert abs(t["seconds_per_comparison"]["median"] - 3.0) / 3.0 < 0.05


def test_beat_task_is_registered():
    from django.conf import settings

    from engine.celery import app
    from engine.stats import tasks  # noqa: F401

    assert "stats.rollups_refresh" in app.tasks
    assert any(e["task"] == "stats.rollups_refresh" for e in settings.CELERY_BEAT_SCHEDULE.values())


def test_generation_job_progress_and_failures(world, api):
    [job] = get(api, world["lead"], world["project"], "generation")
    assert (job["items"], job["items_done"], job["items_failed"], job["items_pending"]) == (3, 2, 1, 0)
    assert job["candidates"] == 5 and job["progress"] == 1.0
    assert job["candidates_per_minute"] == 2.5  # 5 candidates in 2 minutes
