from django.apps import AppConfig


class StatsConfig(AppConfig):
    name = "engine.stats"
    label = "stats"
    verbose_name = "Dashboard figures"
    default_auto_field = "django.db.models.BigAutoField"
