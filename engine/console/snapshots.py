"""Snapshots: define one (kind, format, pairing, rounds, filters), follow its build, its dataset
card rendered, its files with sizes and sha256 to download, and what changed since the previous
snapshot of its kind. Writes go through the exports API (engine.exports.apis)."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.files.storage import default_storage
from django.urls import path

from engine.console import markdown
from engine.console.pages import console_error, console_render
from engine.errors import EngineError, NotFound
from engine.exports import selectors
from engine.exports.definition import ASSETS, FILTERS, FORMATS, KINDS, PAIRINGS
from engine.exports.models import Snapshot

CARD_MAX_BYTES = 512 * 1024  # a card is a few kB; a larger README is shown as a download only


@login_required
def snapshots_page(request, slug: str):
    try:
        project = selectors.project_for_exports(request.user, slug)
    except EngineError as exc:
        return console_error(request, exc, area="snapshots")
    snapshots = list(selectors.snapshot_list(project=project)[:50])
    return console_render(request, "console/snapshots.html", {
        "snapshots": snapshots, "kinds": KINDS, "formats": FORMATS, "pairings": PAIRINGS, "assets": ASSETS,
        "filters": {name: desc for name, (_, desc) in FILTERS.items()},
        "rounds": project.rounds.order_by("index").values_list("index", "state"),
        "since_choices": [s for s in snapshots if s.state == Snapshot.State.DONE],
    }, area="snapshots", project=project, entry="src/console/snapshots.js")


def _card(snapshot: Snapshot):
    entry = next((f for f in snapshot.manifest.get("files", []) if f["path"] == "README.md"), None)
    if entry is None or entry["size"] > CARD_MAX_BYTES:
        return None
    with default_storage.open(entry["storage_name"], "rb") as fh:
        return markdown.render(fh.read().decode("utf-8", errors="replace"))


@login_required
def snapshot_page(request, slug: str, snapshot_id: int):
    try:
        project = selectors.project_for_exports(request.user, slug)
        snapshot = selectors.snapshot_get_for_user(request.user, snapshot_id)
        if snapshot.project_id != project.pk:
            raise NotFound(f"No snapshot {snapshot_id} in project '{slug}'.")
    except EngineError as exc:
        return console_error(request, exc, area="snapshots")
    done = snapshot.state == Snapshot.State.DONE
    return console_render(request, "console/snapshot.html", {
        "snapshot": snapshot, "progress": selectors.snapshot_progress(snapshot),
        "files": snapshot.manifest.get("files", []), "counts": sorted(snapshot.manifest.get("counts", {}).items()),
        "card": _card(snapshot) if done else None, "changes": selectors.snapshot_changes(snapshot) if done else None,
    }, area="snapshots", project=project, entry="src/console/snapshots.js")


urlpatterns = [
    path("projects/<slug:slug>/snapshots/", snapshots_page, name="console-snapshots"),
    path("projects/<slug:slug>/snapshots/<int:snapshot_id>/", snapshot_page, name="console-snapshot"),
]
