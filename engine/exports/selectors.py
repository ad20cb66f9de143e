"""Reads of exports, for a user: trainers and leads of the snapshot's project only."""
from __future__ import annotations

from django.db.models import QuerySet

from engine.errors import NotFound
from engine.exports.models import Snapshot
from engine.models import Project, Role
from engine.selectors import project_get_for_user

EXPORT_ROLES = [Role.TRAINER, Role.LEAD]


def project_for_exports(user, slug: str) -> Project:
    return project_get_for_user(user, slug, roles=EXPORT_ROLES)


def snapshot_list(*, project: Project) -> QuerySet[Snapshot]:
    return Snapshot.objects.filter(project=project).select_related("project").order_by("-created_at", "-id")


def snapshot_get_for_user(user, snapshot_id: int) -> Snapshot:
    """The snapshot if `user` is a trainer or lead of its project; else not found / forbidden."""
    snapshot = Snapshot.objects.select_related("project").filter(pk=snapshot_id).first()
    if snapshot is None:
        raise NotFound(f"No snapshot {snapshot_id} that you can see.")
    try:
        project_for_exports(user, snapshot.project.slug)
    except NotFound:
        raise NotFound(f"No snapshot {snapshot_id} that you can see.") from None
    return snapshot


def snapshot_file(snapshot: Snapshot, path: str) -> dict:
    """The manifest entry of one of the snapshot's files."""
    for entry in snapshot.manifest.get("files", []):
        if entry["path"] == path:
            return entry
    if snapshot.state != Snapshot.State.DONE:
        raise NotFound(f"Snapshot {snapshot.pk} is {snapshot.state}; its files exist once it is built.")
    raise NotFound(f"Snapshot {snapshot.pk} has no file '{path}'; see its manifest for the list.")


def snapshot_progress(snapshot: Snapshot) -> dict:
    total = snapshot.items_total
    return {"items_done": snapshot.items_done, "items_total": total, "rows_done": snapshot.rows_done,
            "rows_total": snapshot.rows_total,
            "fraction": 1.0 if snapshot.state == Snapshot.State.DONE else
            (round(snapshot.items_done / total, 4) if total else 0.0)}
