"""The Celery app. Queues: `default` for bookkeeping, `model` for GPU/CPU model work,
so that model workers can consume only `model` (`celery -A engine worker -Q model`)."""
import os
from collections.abc import Callable

from botocore.exceptions import ConnectionError as StorageConnectionError
from botocore.exceptions import HTTPClientError as StorageHTTPClientError
from celery import Celery, shared_task
from django.db import InterfaceError, OperationalError
from kombu.transport import TRANSPORT_ALIASES

from engine.files import without_server_paths

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "engine.settings")

# "filesystem://" means the transport that writes each message whole (engine/broker.py).
TRANSPORT_ALIASES["filesystem"] = "engine.broker:Transport"

app = Celery("engine")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Errors worth retrying for any task: the database or the S3 endpoint was briefly unreachable
# (restarting; boto3 has retried the request a few times already).
TRANSIENT_ERRORS = (OperationalError, InterfaceError, StorageConnectionError, StorageHTTPClientError)


def row_task(*, name: str, fail: Callable[..., object], id_name: str, soft_time_limit: int, time_limit: int,
             retry_on: tuple[type[BaseException], ...] = (), max_retries: int = 3, retry_backoff: int = 5,
             retry_backoff_max: int = 300, **options):
    """`shared_task` with the house defaults for a task that does the work of one database row,
    given its id: idempotent services make redelivery safe (acks_late, requeued when a worker
    dies); transient errors (the database's and the S3 endpoint's, plus `retry_on`) retry with backoff and jitter; the
    final failure is recorded on the row by `fail(**{id_name: row_id}, reason=...)`, without the
    server's paths. Status lives
    in the database, never in Celery results."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        row_id = args[0] if args else kwargs.get(id_name)
        # The reason is shown to users (API, dashboard): an OSError names the server's file.
        fail(**{id_name: row_id, "reason": without_server_paths(f"{type(exc).__name__}: {exc}")})

    return shared_task(
        name=name, bind=True, acks_late=True, reject_on_worker_lost=True,
        soft_time_limit=soft_time_limit, time_limit=time_limit,
        autoretry_for=TRANSIENT_ERRORS + tuple(retry_on), max_retries=max_retries,
        retry_backoff=retry_backoff, retry_backoff_max=retry_backoff_max, retry_jitter=True,
        on_failure=on_failure, **options,
    )
