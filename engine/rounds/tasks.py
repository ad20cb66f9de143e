"""Thin Celery wrappers of a round's model work, both on queue "model" so that GPU workers can
take only model work (`celery -A engine worker -Q model`). Status lives in the database.

`generate_item` (one item's candidates, `generate.job_item_generate`) and `training_run_task`
(`train.training_run_execute`) are idempotent by construction, so acks_late redelivery after a
worker crash is safe. The task names stay as first published: queued messages carry them.
"""
import os

from engine.celery import row_task
from engine.rounds import generate, train
from modelzoo.generators.http import GeneratorUnavailable


@row_task(
    name="modelzoo.generate_item", fail=generate.job_item_fail, id_name="job_item_id",
    soft_time_limit=240, time_limit=300,
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
