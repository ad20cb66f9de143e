"""Thin Celery wrapper: build one snapshot by id, on the default queue. Status lives in the row.

Idempotent by construction (`services.snapshot_build`): a built snapshot returns at once, and a
redelivered build writes the same bytes to the same content-addressed names.
"""
from celery import shared_task
from django.db import InterfaceError, OperationalError

from engine.exports import services


def _on_failure(self, exc, task_id, args, kwargs, einfo):
    snapshot_id = args[0] if args else kwargs.get("snapshot_id")
    services.snapshot_fail(snapshot_id=snapshot_id, reason=f"{type(exc).__name__}: {exc}")


@shared_task(
    name="exports.snapshot_build",
    bind=True,
    queue="default",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=6 * 3600,  # a million pairs take about a minute; whole projects with big files longer
    time_limit=6 * 3600 + 300,
    autoretry_for=(OperationalError, InterfaceError),
    max_retries=3,
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    on_failure=_on_failure,
)
def snapshot_build_task(self, snapshot_id: int) -> None:
    services.snapshot_build(snapshot_id=snapshot_id)
