"""python manage.py generate --project SLUG [--wait]: start a generation job."""
import time

from django.core.management.base import BaseCommand, CommandError

from engine.errors import EngineError
from engine.models import Project
from engine.rounds.generate import generation_job_start
from modelzoo import selectors
from modelzoo.models import ProjectCheckpoint
from modelzoo.services import bootstrap_register


class Command(BaseCommand):
    help = ("Generate candidates for the project's masks that have none in the current round "
            "(Celery workers on queue 'model' do the work).")

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--masks", type=int, nargs="+", help="Only these mask ids.")
        parser.add_argument("--steps", type=int, help="Sampling steps (default: the project's).")
        parser.add_argument("--candidates", type=int, help="N per item (default: the project's).")
        parser.add_argument("--wait", action="store_true", help="Poll the job's progress until it finishes.")
        parser.add_argument("--timeout", type=float, default=3600, help="Seconds to wait at most with --wait.")
        parser.add_argument("--no-bootstrap", action="store_true",
                            help="Do not register the bootstrap checkpoint for a project without a mix.")

    def handle(self, *args, **opts):
        project = Project.objects.filter(slug=opts["project"]).first()
        if project is None:
            raise CommandError(f"No project '{opts['project']}'.")
        try:
            if not opts["no_bootstrap"] and not ProjectCheckpoint.objects.filter(project=project).exists():
                checkpoint, _ = bootstrap_register()
                self.stdout.write(f"Using the bootstrap checkpoint {checkpoint}.")
            job = generation_job_start(project=project, mask_ids=opts["masks"], steps=opts["steps"],
                                       candidates_per_item=opts["candidates"])
        except EngineError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Generation job {job.pk} for '{project.slug}': {job.total_items} items, "
                          f"{job.total_candidates} candidates queued on 'model'.")
        if not opts["wait"] or not job.total_items:
            return
        deadline = time.monotonic() + opts["timeout"]
        while True:
            job = selectors.generation_job_get(project, job.pk)
            p = selectors.generation_job_progress(job)
            self.stdout.write(f"  {p['done']}/{p['total']} candidates, {p['items_failed']} failed items, "
                              f"{p['candidates_per_s']}/s")
            if job.state == job.State.FINISHED:
                break
            if time.monotonic() > deadline:
                raise CommandError(f"Job {job.pk} not finished after {opts['timeout']} s.")
            time.sleep(2)
        if p["items_failed"]:
            for f in selectors.generation_job_failures(job):
                self.stderr.write(f"  item {f['item_id']}: {f['error']}")
            raise CommandError(f"{p['items_failed']} item(s) failed.")
