"""Writes of exports: define a snapshot, build it, mark it failed.

A snapshot is immutable once built. Its definition (filters, pairing, format) plus the data
watermark (the newest judgement and artist mesh it includes) are hashed; defining the same
thing twice returns the first snapshot. Files are stored content-addressed under
`exports/<sha[:2]>/<sha>.<ext>`; the manifest maps each dataset path to its stored file.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import pyarrow.compute as pc
from django.core.files import File
from django.db import IntegrityError, transaction
from django.utils import timezone

from engine import lost_work
from engine.errors import Conflict, NotFound, ValidationFailed
from engine.exports import rows as rows_mod
from engine.exports.card import card_text
from engine.exports.definition import definition_assets, definition_hash, definition_normalise
from engine.exports.models import Snapshot
from engine.exports.writers import WRITERS, FileCache
from engine.files import store_content_addressed
from engine.models import Project
from engine.states import job_lifecycle, transition_check
from modelzoo.files import sha256_file

log = logging.getLogger(__name__)

PROGRESS_EVERY_ITEMS = 1000

_TRANSITIONS = job_lifecycle(pending=Snapshot.State.PENDING, working=Snapshot.State.BUILDING,
                             done=Snapshot.State.DONE, failed=Snapshot.State.FAILED)


def snapshot_transition(*, snapshot: Snapshot, to: str, error: str = "") -> Snapshot:
    """The one place a snapshot's state changes. A built snapshot never changes again."""
    transition_check(_TRANSITIONS, current=snapshot.state, to=to, what=f"Snapshot {snapshot.pk}",
                     code="snapshot_state")
    snapshot.state = to
    snapshot.error = error
    fields = ["state", "error"]
    if to == Snapshot.State.DONE:
        snapshot.built_at = timezone.now()
        fields.append("built_at")
    snapshot.save(update_fields=fields)
    return snapshot


def _selection(snapshot: Snapshot) -> rows_mod.Selection:
    d = snapshot.definition
    wm = rows_mod.Watermark(judgement_max=d["watermark"]["judgement_max"], artist_max=d["watermark"]["artist_max"],
                            judgement_after=d["watermark"].get("judgement_after", 0),
                            artist_after=d["watermark"].get("artist_after", 0))
    return rows_mod.Selection(project=snapshot.project, definition=d, watermark=wm)


def snapshot_define(*, project: Project, kind: str, format: str, filters: dict | None = None,
                    pairing: str | None = None, keep_ties: bool | None = None, since: int | None = None,
                    shard_bytes: int | None = None, license: str | None = None, assets: str | None = None,
                    created_by=None) -> tuple[Snapshot, bool]:
    """Validate a definition, fix its data watermark, and store it. Returns (snapshot, created).

    Raises ValidationFailed for an unknown filter or option, a bad `since`, or an empty selection.
    """
    definition = definition_normalise(kind=kind, format=format, filters=filters, pairing=pairing,
                                      keep_ties=keep_ties, shard_bytes=shard_bytes, license=license,
                                      assets=assets)
    watermark = rows_mod.watermark_now(project)
    since_snapshot = None
    if since is not None:
        since_snapshot = Snapshot.objects.filter(project=project, pk=since).first()
        if since_snapshot is None:
            raise ValidationFailed(f"'since': no snapshot {since} in project '{project.slug}'.", code="invalid_since")
        if since_snapshot.state != Snapshot.State.DONE:
            raise ValidationFailed(f"'since': snapshot {since} is {since_snapshot.state}; only a built snapshot "
                                   "can start an incremental one.", code="invalid_since")
        prev = since_snapshot.definition["watermark"]
        watermark["judgement_after"] = prev["judgement_max"]
        watermark["artist_after"] = prev["artist_max"]
    definition["since"] = since
    definition["watermark"] = watermark
    if definition["filters"]["rounds"]:
        present = set(project.rounds.filter(index__in=definition["filters"]["rounds"]).values_list("index", flat=True))
        missing = sorted(set(definition["filters"]["rounds"]) - present)
        if missing:
            raise ValidationFailed(f"'rounds': project '{project.slug}' has no round(s) {missing}.",
                                   code="invalid_filter")
    probe = Snapshot(project=project, definition=definition)
    selection = _selection(probe)
    if not selection.items().exists():
        raise ValidationFailed(
            "This definition selects no items: no judgements (or artist meshes) pass its filters"
            + (f" since snapshot {since}" if since else "") + ". Loosen the filters or wait for more judgements.",
            code="empty_selection",
        )
    sha = definition_hash(project_slug=project.slug, definition=definition)
    existing = Snapshot.objects.filter(project=project, definition_sha256=sha).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            snapshot = Snapshot.objects.create(project=project, kind=kind, format=format, definition=definition,
                                               definition_sha256=sha, since=since_snapshot, created_by=created_by)
    except IntegrityError:
        return Snapshot.objects.get(project=project, definition_sha256=sha), False
    return snapshot, True


def snapshot_build_enqueue(*, snapshot: Snapshot) -> None:
    from engine.exports.tasks import snapshot_build_task  # a cycle: the task module imports this one

    transaction.on_commit(lambda: snapshot_build_task.delay(snapshot.pk))


def snapshot_rebuild_request(*, snapshot: Snapshot) -> Snapshot:
    """Queue a build again for a failed (or never started) snapshot; a built one is final."""
    if snapshot.state == Snapshot.State.DONE:
        raise Conflict(f"Snapshot {snapshot.pk} is built and immutable; define a new one to change it.",
                       code="snapshot_built")
    snapshot_build_enqueue(snapshot=snapshot)
    return snapshot


def snapshot_files_write(*, snapshot: Snapshot, folder: Path, progress=None) -> dict:
    """Write the snapshot's files into `folder`; return {"files": [(path, local)], "counts", ...}.

    Streams: one batch of items in memory at a time; its rows go to the writer as one Arrow table.
    """
    d = snapshot.definition
    selection = _selection(snapshot)
    layout = definition_assets(d)
    writer = WRITERS[d["format"]](kind=d["kind"], folder=folder, shard_bytes=d["shard_bytes"], files=FileCache(),
                                  assets=layout)
    seen = {"items": 0, "rows": 0}
    rounds, checkpoints = set(), set()
    counts = {"rows": 0, "items": 0, "hard_case_rows": 0}
    if d["kind"] == "dpo":
        counts.update(ties=0, artist_pairs=0)

    def on_items(n):
        seen["items"] += n
        if progress:
            progress(items=seen["items"], rows=counts["rows"])

    if d["kind"] == "sft":
        batches, group_key, checkpoint_columns = rows_mod.sft_batches, "item_id", ["checkpoint"]
    else:
        batches, group_key, checkpoint_columns = rows_mod.dpo_batches, "group_id", ["chosen_checkpoint",
                                                                                   "rejected_checkpoint"]
    try:
        for table in batches(selection, progress=on_items):
            counts["rows"] += table.num_rows
            counts["items"] += pc.count_distinct(table[group_key]).as_py()  # an item's rows are all in one batch
            rounds.update(pc.unique(table["round"]).to_pylist())
            for column in checkpoint_columns:
                checkpoints.update(c for c in pc.unique(table[column]).to_pylist() if c)
            if d["kind"] == "sft":
                counts["hard_case_rows"] += pc.sum(table["is_hard_case"]).as_py() or 0
            else:
                counts["ties"] += pc.sum(table["is_tie"]).as_py() or 0
                counts["artist_pairs"] += pc.sum(pc.equal(table["pairing"], "artist")).as_py() or 0
            writer.write_batch(table)
    except BaseException:
        writer.abort()
        raise
    outputs = writer.close()
    asset_outputs = writer.asset_outputs()
    if writer.assets is not None:
        counts.update(assets=writer.assets.count, asset_bytes=writer.assets.bytes)
    data_files = [rel for rel, _ in outputs]
    card = card_text(project=snapshot.project, definition=d, definition_sha256=snapshot.definition_sha256,
                     counts=counts, data_files=data_files, checkpoints=sorted(checkpoints), rounds=sorted(rounds),
                     asset_files=[rel for rel, _ in asset_outputs])
    (folder / "README.md").write_text(card, encoding="utf-8")
    return {"files": [("README.md", folder / "README.md"), *outputs, *asset_outputs], "counts": counts,
            "items_seen": seen["items"]}


def snapshot_build(*, snapshot_id: int, on_progress=None) -> Snapshot:
    """Build a snapshot's files and manifest. Idempotent: a built snapshot is returned as is;
    a rebuild after a crash writes the same bytes to the same content-addressed names."""
    with transaction.atomic():
        snapshot = Snapshot.objects.select_for_update().select_related("project").filter(pk=snapshot_id).first()
        if snapshot is None:
            raise NotFound(f"No snapshot {snapshot_id}.")
        if snapshot.state == Snapshot.State.DONE:
            return snapshot
        snapshot_transition(snapshot=snapshot, to=Snapshot.State.BUILDING)
        snapshot.items_total = _selection(snapshot).items().count()
        snapshot.items_done = snapshot.rows_done = 0
        snapshot.heartbeat_at = timezone.now()  # engine.lost_work: a worker has it
        snapshot.save(update_fields=["items_total", "items_done", "rows_done", "heartbeat_at"])
    with lost_work.heartbeat(Snapshot.objects.filter(pk=snapshot.pk)):  # builds may take hours
        return _snapshot_build_work(snapshot=snapshot, on_progress=on_progress)


def _snapshot_build_work(*, snapshot: Snapshot, on_progress) -> Snapshot:
    """Write a building snapshot's files, store them, and record its manifest: done."""
    last = {"items": 0}

    def progress(*, items, rows):
        if on_progress is not None:
            on_progress(items=items, rows=rows)
        if items - last["items"] >= PROGRESS_EVERY_ITEMS or items == snapshot.items_total:
            last["items"] = items
            Snapshot.objects.filter(pk=snapshot.pk).update(items_done=items, rows_done=rows)

    folder = Path(tempfile.mkdtemp(prefix=f"snapshot-{snapshot.pk}-"))
    try:
        written = snapshot_files_write(snapshot=snapshot, folder=folder, progress=progress)
        files = []
        for rel, local in written["files"]:
            sha = sha256_file(local)
            with open(local, "rb") as handle:  # streamed into storage, unless these bytes are there already
                name = store_content_addressed(folder="exports", sha256=sha, data=File(handle),
                                               extension=local.suffix.lstrip(".") or "bin")
            files.append({"path": rel, "size": local.stat().st_size, "sha256": sha, "storage_name": name})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    with transaction.atomic():
        snapshot = Snapshot.objects.select_for_update().get(pk=snapshot.pk)
        if snapshot.state == Snapshot.State.DONE:  # a concurrent duplicate task finished first
            return snapshot
        snapshot.manifest = {"files": files, "counts": written["counts"]}
        snapshot.rows_total = snapshot.rows_done = written["counts"]["rows"]
        snapshot.items_done = written["items_seen"]
        snapshot.save(update_fields=["manifest", "rows_total", "rows_done", "items_done"])
        snapshot_transition(snapshot=snapshot, to=Snapshot.State.DONE)
    log.info("snapshot %s built: %s rows, %s files", snapshot.pk, snapshot.rows_total, len(files))
    return snapshot


def snapshots_lost_requeue(*, silent_s: float) -> lost_work.Requeued:
    """Send again the builds whose worker was lost (engine.lost_work): building, and no
    heartbeat for more than `silent_s`."""
    from engine.exports.tasks import snapshot_build_task  # a cycle: the task module imports this one

    return lost_work.lost_requeue(
        unfinished=Snapshot.objects.filter(state=Snapshot.State.BUILDING, heartbeat_at__isnull=False),
        silent_s=silent_s, requeue=lambda ids: [snapshot_build_task.delay(pk) for pk in ids],
        fail=lambda pk, reason: snapshot_fail(snapshot_id=pk, reason=reason), what="snapshot builds")


def snapshot_fail(*, snapshot_id: int, reason: str) -> Snapshot | None:
    with transaction.atomic():
        snapshot = Snapshot.objects.select_for_update().filter(pk=snapshot_id).first()
        if snapshot is None or snapshot.state == Snapshot.State.DONE:
            return snapshot
        if snapshot.state == Snapshot.State.FAILED:
            return snapshot
        return snapshot_transition(snapshot=snapshot, to=Snapshot.State.FAILED, error=reason[:2000])
