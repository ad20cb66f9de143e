"""Thin Celery wrappers of annotation services."""
from celery import shared_task

from annotation import services


@shared_task(name="annotation.leases_expire", acks_late=True, soft_time_limit=50, time_limit=60)
def leases_expire() -> int:
    """Beat, every 30 s: expire leases past their time so no item is ever stuck (also done at lookup)."""
    return services.leases_expire_due(limit=5000)
