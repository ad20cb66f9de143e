"""Celery tasks of the engine app, found by `app.autodiscover_tasks()` (which looks for
`<app>/tasks.py`): a round's model work (generation, training) lives with the rounds, an
import's preparation and batches with ingest, each beside its lost-work sweep (engine.lost_work)."""
from engine.ingest.tasks import ingest_batch, ingest_prepare, uploads_expire  # noqa: F401
from engine.ingest.tasks import lost_work_requeue as ingest_lost_work_requeue  # noqa: F401
from engine.rounds.tasks import generate_item, training_run_task  # noqa: F401
from engine.rounds.tasks import lost_work_requeue as rounds_lost_work_requeue  # noqa: F401
