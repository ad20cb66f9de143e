"""The Django project (settings, urls, the Celery app) and the engine's core domain:
projects, members, images, object masks, rounds, ingest, exports and stats."""
from engine.celery import app as celery_app

__all__ = ("celery_app",)
