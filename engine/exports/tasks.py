"""Thin Celery wrapper: build one snapshot by id, on the default queue. Status lives in the row.

Idempotent by construction (`services.snapshot_build`): a built snapshot returns at once, and a
redelivered build writes the same bytes to the same content-addressed names.
"""
from engine.celery import row_task
from engine.exports import services


@row_task(
    name="exports.snapshot_build", fail=services.snapshot_fail, id_name="snapshot_id", queue="default",
    soft_time_limit=6 * 3600,  # a million pairs take about a minute; whole projects with big files longer
    time_limit=6 * 3600 + 300,
)
def snapshot_build_task(self, snapshot_id: int) -> None:
    services.snapshot_build(snapshot_id=snapshot_id)
