from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS, connections


class AnnotationConfig(AppConfig):
    name = "annotation"
    verbose_name = "Annotation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from annotation.store import queue_store_choose  # models must be loaded first

        queue_store_choose(connections[DEFAULT_DB_ALIAS].vendor)
