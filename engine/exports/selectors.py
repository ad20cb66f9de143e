"""Reads of exports, for a user: trainers and leads of the snapshot's project only."""
from __future__ import annotations

from django.db.models import Q, QuerySet

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


def snapshot_previous(snapshot: Snapshot) -> Snapshot | None:
    """The project's built snapshot of the same kind defined just before this one."""
    return (Snapshot.objects.filter(project_id=snapshot.project_id, kind=snapshot.kind, state=Snapshot.State.DONE)
            .filter(Q(created_at__lt=snapshot.created_at) | Q(created_at=snapshot.created_at, pk__lt=snapshot.pk))
            .order_by("-created_at", "-id").first())


def _flat(definition: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in definition.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def snapshot_changes(snapshot: Snapshot) -> dict:
    """What changed since the previous snapshot of the same kind: the definition's settings, the
    data watermark (newest judgement included), the counts (rows, items, ...) and the files."""
    previous = snapshot_previous(snapshot)
    if previous is None:
        return {"previous": None}
    before, after = _flat(previous.definition), _flat(snapshot.definition)
    settings = [{"name": k, "before": before.get(k), "after": after.get(k)}
                for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
    counts_before, counts_after = previous.manifest.get("counts", {}), snapshot.manifest.get("counts", {})
    counts = [{"name": k, "before": counts_before.get(k), "after": counts_after.get(k),
               "delta": (counts_after.get(k) or 0) - (counts_before.get(k) or 0)}
              for k in sorted(set(counts_before) | set(counts_after))]
    files_before = {f["path"]: f for f in previous.manifest.get("files", [])}
    files_after = {f["path"]: f for f in snapshot.manifest.get("files", [])}
    files = {"added": sorted(set(files_after) - set(files_before)),
             "removed": sorted(set(files_before) - set(files_after)),
             "changed": sorted(p for p in set(files_before) & set(files_after)
                               if files_before[p]["sha256"] != files_after[p]["sha256"]),
             "unchanged": sum(1 for p in set(files_before) & set(files_after)
                              if files_before[p]["sha256"] == files_after[p]["sha256"])}
    return {"previous": {"id": previous.pk, "format": previous.format, "created_at": previous.created_at,
                         "rows_total": previous.rows_total},
            "settings": settings, "counts": counts, "files": files}
