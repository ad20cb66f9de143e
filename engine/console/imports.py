"""Import: drop files on the page, uploaded in chunks, ingested by a job on the workers."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.urls import path

from engine import selectors
from engine.console.pages import console_error, console_render
from engine.errors import EngineError
from engine.models import Role


@login_required
def import_page(request, slug: str):
    try:
        project = selectors.project_get_for_user(request.user, slug, roles=[Role.LEAD])
    except EngineError as exc:
        return console_error(request, exc, area="import")
    return console_render(request, "console/import.html", {}, area="import", project=project,
                          entry="src/console/imports.js")


urlpatterns = [
    path("projects/<slug:slug>/import/", import_page, name="console-import"),
]
