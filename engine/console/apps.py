from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    name = "engine.console"
    label = "console"
    verbose_name = "Console (lead and trainer pages)"
    default_auto_field = "django.db.models.BigAutoField"
