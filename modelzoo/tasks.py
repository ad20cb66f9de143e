"""Thin Celery wrappers around `modelzoo.services`. Status lives in the database.

`generate_item` is sent to queue "model" (`services.job_items_enqueue`) so GPU workers can take only model work
(`celery -A engine worker -Q model`). It is idempotent by construction (see
`services.job_item_generate`), so acks_late redelivery after a worker crash is safe.
"""
from celery import shared_task
from django.db import InterfaceError, OperationalError

from modelzoo import services
from modelzoo.generators.http import GeneratorUnavailable


def _on_failure(self, exc, task_id, args, kwargs, einfo):
    """Final failure (not a retry): record it on the item with the reason."""
    job_item_id = args[0] if args else kwargs.get("job_item_id")
    services.job_item_fail(job_item_id=job_item_id, reason=f"{type(exc).__name__}: {exc}")


@shared_task(
    name="modelzoo.generate_item",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=240,
    time_limit=300,
    # Transient only: the inference server or the database was briefly unavailable.
    autoretry_for=(GeneratorUnavailable, OperationalError, InterfaceError),
    max_retries=5,
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    on_failure=_on_failure,
)
def generate_item(self, job_item_id: int) -> None:
    services.job_item_generate(job_item_id=job_item_id)
