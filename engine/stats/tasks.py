"""Thin Celery wrappers of the stats services."""
from celery import shared_task
from django.core.cache import cache

from engine.models import Project
from engine.stats import selectors, services

REFRESH_LOCK = "stats:rollups-refresh:lock"


@shared_task(name="stats.rollups_refresh", acks_late=True, soft_time_limit=900, time_limit=960)
def rollups_refresh() -> dict:
    """Beat, every 60 s: fold new judgements into the rollups, then refit the ratings cache.

    A cache lock keeps two runs from rebuilding the same days at once (a backfill can outlast
    the beat interval); a run that finds the lock taken does nothing.
    """
    if not cache.add(REFRESH_LOCK, 1, timeout=960):
        return {}
    try:
        done = services.rollups_refresh()
        for project in Project.objects.filter(slug__in=[s for s, days in done.items() if days]):
            everything = selectors.Filters()
            selectors.ratings(project, everything)  # warm the Bradley-Terry fit and the memoised figures
            selectors.throughput(project, everything)
            selectors.annotator_table(project, everything)
        return done
    finally:
        cache.delete(REFRESH_LOCK)
