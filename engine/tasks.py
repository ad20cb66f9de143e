"""Celery tasks of the engine app, found by `app.autodiscover_tasks()` (which looks for
`<app>/tasks.py`): a round's model work (generation, training) lives with the rounds, an
import's batches with ingest."""
from engine.ingest.tasks import ingest_batch, ingest_prepare, uploads_expire  # noqa: F401
from engine.rounds.tasks import generate_item, training_run_task  # noqa: F401
