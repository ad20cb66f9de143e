"""The Celery app. Queues: `default` for bookkeeping, `model` for GPU/CPU model work,
so that model workers can consume only `model` (`celery -A engine worker -Q model`)."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "engine.settings")

app = Celery("engine")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
