"""python manage.py demo: the demo project, its photos and masks, and one user per role."""
from django.core.management.base import BaseCommand

from engine.demo import demo_load


class Command(BaseCommand):
    help = "Create or refresh the demo project and demo users; prints the logins."

    def handle(self, *args, **options):
        project, summary, logins = demo_load()
        self.stdout.write(
            f"Demo project '{project.slug}': {project.images.count()} images "
            f"({summary.images_imported} new, {summary.masks_imported} new masks)."
        )
        self.stdout.write("Demo logins (username / password):")
        for username, password in logins.items():
            self.stdout.write(f"  {username:<12} {password}")
