"""python manage.py export --project SLUG --kind {sft,dpo} --format {parquet,webdataset,jsonl} --out DIR
    [--assets embedded|referenced]

Defines the snapshot (or finds the same definition built before), builds it in this process with
a progress bar, and copies its files to DIR with their dataset paths (README.md, data/...).
"""
import json
import shutil
from pathlib import Path

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from engine.errors import EngineError
from engine.exports import services
from engine.exports.definition import ASSETS, FILTERS, FORMATS, KINDS, PAIRINGS
from engine.exports.models import Snapshot
from engine.models import Project


class Command(BaseCommand):
    help = "Export a project's judgements as an SFT or DPO dataset snapshot."

    def add_arguments(self, parser):
        parser.add_argument("--project", required=True, help="Project slug.")
        parser.add_argument("--kind", required=True, choices=KINDS)
        parser.add_argument("--format", default="parquet", choices=FORMATS)
        parser.add_argument("--out", required=True, help="Folder to write the dataset into.")
        parser.add_argument("--pairing", choices=sorted(PAIRINGS), help="DPO pairing strategy (default recorded).")
        parser.add_argument("--keep-ties", action="store_true", help="DPO: keep tied pairs (is_tie true).")
        parser.add_argument("--rounds", help="Comma-separated round indexes, e.g. 1,2.")
        parser.add_argument("--since", type=int, help="Incremental: only what is newer than this snapshot id.")
        parser.add_argument("--shard-bytes", type=int, help="Target shard size in bytes (default 1 GB).")
        parser.add_argument("--assets", choices=sorted(ASSETS),
                            help="Photos and meshes in every row (embedded) or once under assets/ (referenced); "
                                 "default referenced for DPO, embedded for SFT (parquet and webdataset).")
        parser.add_argument("--filter", action="append", default=[], metavar="NAME=JSON",
                            help=f"Another filter, value as JSON; names: {', '.join(FILTERS)}.")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, **opts):
        project = Project.objects.filter(slug=opts["project"]).first()
        if project is None:
            raise CommandError(f"No project '{opts['project']}'.")
        filters = {}
        for spec in opts["filter"]:
            name, _, raw = spec.partition("=")
            try:
                filters[name] = json.loads(raw)
            except json.JSONDecodeError:
                filters[name] = raw
        if opts["rounds"]:
            filters["rounds"] = [int(r) for r in opts["rounds"].split(",") if r.strip()]
        try:
            snapshot, created = services.snapshot_define(
                project=project, kind=opts["kind"], format=opts["format"], filters=filters,
                pairing=opts["pairing"] if opts["kind"] == "dpo" else None,
                keep_ties=opts["keep_ties"] if opts["kind"] == "dpo" else None,
                since=opts["since"], shard_bytes=opts["shard_bytes"], assets=opts["assets"])
            if snapshot.state != Snapshot.State.DONE:
                snapshot = self._build(snapshot, quiet=opts["no_progress"])
        except EngineError as exc:
            raise CommandError(exc.message) from None
        out = Path(opts["out"])
        for entry in snapshot.manifest["files"]:
            target = out / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            with default_storage.open(entry["storage_name"], "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        counts = snapshot.manifest["counts"]
        self.stdout.write(f"snapshot {snapshot.pk} ({'new' if created else 'existing'}): {counts['rows']} rows, "
                          f"{len(snapshot.manifest['files'])} files in {out}")

    def _build(self, snapshot, *, quiet):
        # Build in this process (no worker needed); the same service the Celery task calls.
        total = services._selection(snapshot).items().count()
        bar = tqdm(total=total, unit="item", disable=quiet, desc=f"snapshot {snapshot.pk}")
        done = {"n": 0}

        def hook(*, items, rows):
            bar.update(items - done["n"])
            bar.set_postfix(rows=rows)
            done["n"] = items

        try:
            return services.snapshot_build(snapshot_id=snapshot.pk, on_progress=hook)
        finally:
            bar.close()
