"""python manage.py register_bootstrap: register the committed bootstrap checkpoint."""
from django.core.management.base import BaseCommand, CommandError

from engine.errors import EngineError
from modelzoo.services import bootstrap_register


class Command(BaseCommand):
    help = ("Register modelzoo/checkpoints/bootstrap.pt (idempotent, stored under its sha256) and make it "
            "the current checkpoint of every project that has none.")

    def handle(self, *args, **options):
        try:
            checkpoint, projects = bootstrap_register()
        except EngineError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Bootstrap checkpoint {checkpoint} (sha256 {checkpoint.sha256[:12]}); "
                          f"made current for {projects} project(s).")
