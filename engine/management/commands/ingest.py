"""python manage.py ingest PATH --project SLUG --format {folder,coco,sa1b}"""
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from engine.ingest.readers import FORMATS, SourceError, read_source
from engine.ingest.services import ingest_items
from engine.models import Project


class Command(BaseCommand):
    help = "Import images and object masks into a project (see the README, 'Ingest formats')."

    def add_arguments(self, parser):
        parser.add_argument("path", type=Path, help="Folder (folder, sa1b) or annotations JSON (coco).")
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--format", required=True, choices=FORMATS)
        parser.add_argument("--images", type=Path, default=None, help="COCO: folder the file_names are relative to.")

    def handle(self, *args, path: Path, project: str, format: str, images: Path | None, **options):
        target = Project.objects.filter(slug=project).first()
        if target is None:
            raise CommandError(f"No project '{project}'. Create it first (API or admin).")
        if not path.exists():
            raise CommandError(f"{path}: no such file or folder.")
        try:
            source = read_source(path, format, images_dir=images)
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        with tqdm(total=source.total, unit="image", disable=options["verbosity"] == 0, file=self.stderr) as bar:
            summary = ingest_items(project=target, items=source.entries, on_progress=lambda _name: bar.update(1))
        self.stdout.write(
            f"imported {summary.images_imported} images ({summary.masks_imported} masks); "
            f"skipped as duplicates {summary.images_duplicate} images ({summary.masks_duplicate} masks); "
            f"rejected {len(summary.rejected)}"
        )
        for rejection in summary.rejected:
            self.stdout.write(f"  rejected: {rejection['reason']}")
