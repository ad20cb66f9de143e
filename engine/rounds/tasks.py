"""Thin Celery wrappers of a round's model work, both on queue "model" so that GPU workers can
take only model work (`celery -A engine worker -Q model`), and beat's sweep of that work lost
with a killed worker (engine.lost_work, on queue "default"). Status lives in the database.

`generate_item` (one item's candidates, `generate.job_item_generate`) and `training_run_task`
(`train.training_run_execute`) are idempotent by construction, so acks_late redelivery after a
worker crash is safe. The task names stay as first published: queued messages carry them.
"""
import os

from celery import shared_task
from django.conf import settings

from engine import lost_work
from engine.celery import row_task
from engine.rounds import generate, train
from modelzoo.generators.http import GeneratorUnavailable


@row_task(
    name="modelzoo.generate_item", fail=generate.job_item_fail, id_name="job_item_id",
    soft_time_limit=settings.GENERATION_TIME_LIMIT_S * 4 // 5, time_limit=settings.GENERATION_TIME_LIMIT_S,
    retry_on=(GeneratorUnavailable,),  # the inference server was briefly unavailable
    max_retries=5, retry_backoff=2, retry_backoff_max=120,
)
def generate_item(self, job_item_id: int) -> None:
    generate.job_item_generate(job_item_id=job_item_id)


@row_task(
    name="engine.training_run", fail=train.training_run_fail, id_name="run_id",
    soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300, retry_backoff_max=600,
)
def training_run_task(self, run_id: int) -> None:
    import torch  # heavy: only a worker that trains pays for it

    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
    train.training_run_execute(run_id=run_id)


@shared_task(name="rounds.lost_work_requeue", acks_late=True, soft_time_limit=50, time_limit=60)
def lost_work_requeue() -> None:
    generate.job_items_lost_requeue(silent_s=lost_work.silent_limit_s(generate_item, alive_by=lost_work.TIME_LIMIT))
    train.training_runs_lost_requeue(silent_s=lost_work.silent_limit_s(training_run_task, alive_by=lost_work.HEARTBEAT))
