"""python manage.py ingest PATH --project SLUG --format {folder,coco,sa1b} [--queue [--no-wait]]"""
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from engine.ingest.jobs import BATCH_SIZE, ingest_job_progress, ingest_job_start, ingest_job_summary
from engine.ingest.readers import FORMATS, SourceError, read_source
from engine.ingest.services import IngestSummary, ingest_items
from engine.models import IngestJob, Project


class Command(BaseCommand):
    help = "Import images and object masks into a project (see the README, 'Ingest formats')."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="Folder (folder, sa1b) or annotations JSON (coco).")
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--format", required=True, choices=FORMATS)
        parser.add_argument("--images", type=Path, default=None, help="COCO: folder the file_names are relative to.")
        parser.add_argument("--queue", action="store_true",
                            help="Run on the Celery workers (queue default), one task per batch; the same command "
                                 "again resumes an unfinished import. PATH must be readable by the workers.")
        parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="--queue: entries per task.")
        parser.add_argument("--no-wait", action="store_true", help="--queue: enqueue and return.")

    def handle(self, *args, path: Path, project: str, format: str, images: Path | None, **options):
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project '{project}'. Create it first (API or admin).")
        if not path.exists():
            raise CommandError(f"{path}: no such file or folder.")
        quiet = options["verbosity"] == 0
        try:
            if options["queue"]:
                summary = self._on_workers(target, path, format, images, options, quiet)
                if summary is None:
                    return
            else:
                source = read_source(path, format, images_dir=images)
                with tqdm(total=source.total, unit="image", disable=quiet, file=self.stderr) as bar:
                    summary = ingest_items(project=target, items=source.entries,
                                           on_progress=lambda _name: bar.update(1))
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"imported {summary.images_imported} images ({summary.masks_imported} masks); "
            f"skipped as duplicates {summary.images_duplicate} images ({summary.masks_duplicate} masks); "
            f"rejected {len(summary.rejected)}"
        )
        for rejection in summary.rejected:
            self.stdout.write(f"  rejected: {rejection['reason']}")

    def _on_workers(self, project, path, fmt, images, options, quiet) -> IngestSummary | None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        job, resumed = ingest_job_start(project=project, path=path, fmt=fmt, images_dir=images,
                                        batch_size=options["batch_size"])
        self.stderr.write(f"ingest job {job.pk}: {'resumed' if resumed else 'started'}, {job.total} entries")
        if options["no_wait"]:
            return None
        with tqdm(total=job.total, unit="image", disable=quiet, file=self.stderr) as bar:
            while True:
                job.refresh_from_db(fields=["state"])
                figures = ingest_job_progress(job=job)
                bar.update(figures["done"] - bar.n)
                if job.state != IngestJob.State.RUNNING:
                    break
                time.sleep(0.5)
        return ingest_job_summary(job=job)
