"""python manage.py generate --project SLUG [--wait]: start a generation job.

`--with-standins` adds the TRELLIS.2 and SAM 3D Objects adapters, running against their stand-ins
(modelzoo/generators/standins.py), to the project's mix beside its checkpoints: one item's candidates
then come from three backends at once (the built-in mesh and splat, a textured PBR GLB, a splat with a
vertex-coloured mesh). `--inline` generates in this process instead of on the workers.
"""
import time

from django.core.management.base import BaseCommand, CommandError

from engine.errors import EngineError
from engine.files import without_server_paths
from engine.models import Project
from engine.rounds import generate
from engine.rounds.generate import generation_job_start
from modelzoo import selectors
from modelzoo.models import ProjectCheckpoint
from modelzoo.services import bootstrap_register, checkpoint_register, project_mix_set

# The stand-in checkpoints: the real adapters (trellis2, sam3d_objects) with config {"standin": true}.
STANDINS = [("trellis2-standin", "trellis2", {"standin": True, "texture_size": 1024}),
            ("sam3d_objects-standin", "sam3d_objects", {"standin": True})]


def standins_add(project) -> list:
    """Put the stand-in checkpoints into the project's mix beside its current ones (equal shares)."""
    mix = [(pc.checkpoint, pc.share) for pc in ProjectCheckpoint.objects.filter(project=project)
           .select_related("checkpoint").order_by("checkpoint_id")]
    share = max([s for _, s in mix], default=1.0)
    for name, backend, config in STANDINS:
        checkpoint, _ = checkpoint_register(name=name, version="1", backend=backend, config=config, project=project)
        if all(c.pk != checkpoint.pk for c, _ in mix):
            mix.append((checkpoint, share))
    project_mix_set(project=project, mix=mix)
    return mix


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
        parser.add_argument("--with-standins", action="store_true",
                            help="Add the TRELLIS.2 and SAM 3D Objects adapters, on their stand-ins, to the mix.")
        parser.add_argument("--inline", action="store_true", help="Generate in this process, not on the workers.")

    def handle(self, *args, **opts):
        project = Project.objects.filter(slug=opts["project"]).first()
        if project is None:
            raise CommandError(f"No project '{opts['project']}'.")
        try:
            if not opts["no_bootstrap"] and not ProjectCheckpoint.objects.filter(project=project).exists():
                checkpoint, _ = bootstrap_register()
                self.stdout.write(f"Using the bootstrap checkpoint {checkpoint}.")
            if opts["with_standins"]:
                mix = standins_add(project)
                self.stdout.write("Mix: " + ", ".join(f"{c} ({c.backend}) x{s:g}" for c, s in mix))
            if opts["inline"]:
                job = generation_job_start(project=project, mask_ids=opts["masks"], steps=opts["steps"],
                                           candidates_per_item=opts["candidates"], enqueue=False)
                self._inline(job)
                return
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

    def _inline(self, job) -> None:
        """Run the job's items here, one by one (what a worker's task does: failures recorded on the item)."""
        failed = 0
        for job_item in job.job_items.order_by("pk"):
            try:
                generate.job_item_generate(job_item_id=job_item.pk)
            except Exception as exc:  # noqa: BLE001 - recorded on the item, as the worker's on_failure does
                generate.job_item_fail(job_item_id=job_item.pk,
                                       reason=without_server_paths(f"{type(exc).__name__}: {exc}"))
                self.stderr.write(f"  item {job_item.item_id}: {type(exc).__name__}: {exc}")
                failed += 1
        self.stdout.write(f"Generation job {job.pk} for '{job.project.slug}': {job.total_items} items generated "
                          f"here, {failed} failed.")
        if failed:
            raise CommandError(f"{failed} item(s) failed.")
