from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "engine.exports"
    label = "exports"
    verbose_name = "Dataset exports"
    default_auto_field = "django.db.models.BigAutoField"
