from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS, connections

from engine import db


class EngineConfig(AppConfig):
    name = "engine"
    verbose_name = "Data engine"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        db.fetchone_choose(connections[DEFAULT_DB_ALIAS].vendor)
        from engine import worker_watchdog  # noqa: F401 (connects the worker's watchdog signals)
        from engine.rounds import selection  # noqa: F401 (its receiver of project_settings_changed)
