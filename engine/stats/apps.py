from django.apps import AppConfig


class StatsConfig(AppConfig):
    name = "engine.stats"
    label = "stats"
    verbose_name = "Dashboard figures"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from engine.stats import heartbeat  # noqa: F401 (connects the worker's heartbeat signals)
