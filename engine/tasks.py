"""Celery tasks of the engine app, found by `app.autodiscover_tasks()` (which looks for
`<app>/tasks.py`): the training run task lives with the rounds."""
from engine.rounds.tasks import training_run_task  # noqa: F401
