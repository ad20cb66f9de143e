"""Thin Celery wrapper of `engine.rounds.training` (queue "model"; status lives on TrainingRun)."""
import os

from celery import shared_task
from django.db import InterfaceError, OperationalError

from engine.rounds import training


def _on_failure(self, exc, task_id, args, kwargs, einfo):
    run_id = args[0] if args else kwargs.get("run_id")
    training.training_run_fail(run_id=run_id, reason=f"{type(exc).__name__}: {exc}")


@shared_task(name="engine.training_run", bind=True, acks_late=True, reject_on_worker_lost=True,
             soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300,
             autoretry_for=(OperationalError, InterfaceError), max_retries=3, retry_backoff=5,
             retry_jitter=True, on_failure=_on_failure)
def training_run_task(self, run_id: int) -> None:
    import torch

    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "2")))
    training.training_run_execute(run_id=run_id)
