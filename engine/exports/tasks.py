"""Thin Celery wrappers: build one snapshot by id, on the default queue, and beat's sweep of the
builds lost with a killed worker (engine.lost_work). Status lives in the row.

Idempotent by construction (`services.snapshot_build`): a built snapshot returns at once, and a
redelivered build writes the same bytes to the same content-addressed names.
"""
from celery import shared_task

from engine import lost_work
from engine.celery import row_task
from engine.exports import services


@row_task(
    name="exports.snapshot_build", fail=services.snapshot_fail, id_name="snapshot_id", queue="default",
    soft_time_limit=6 * 3600,  # a million pairs take about a minute; whole projects with big files longer
    time_limit=6 * 3600 + 300,
)
def snapshot_build_task(self, snapshot_id: int) -> None:
    services.snapshot_build(snapshot_id=snapshot_id)


@shared_task(name="exports.lost_work_requeue", acks_late=True, soft_time_limit=50, time_limit=60)
def lost_work_requeue() -> None:
    services.snapshots_lost_requeue(silent_s=lost_work.silent_limit_s(snapshot_build_task, alive_by=lost_work.HEARTBEAT))
