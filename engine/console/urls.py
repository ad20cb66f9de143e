"""The console under /console/: one `urlpatterns` per area module. A project's areas are at
/console/projects/<slug>/<area>/ and their URL names are `console-<area>` with `slug`
(engine.console.pages.NAV lists them for the navigation)."""
from django.shortcuts import redirect
from django.urls import include, path

urlpatterns = [
    path("", lambda request: redirect("console-projects"), name="console"),
    path("", include("engine.console.projects")),
    path("", include("engine.console.imports")),
    path("", include("engine.console.rounds")),
    path("", include("engine.console.review")),
    path("", include("engine.console.snapshots")),
    path("", include("engine.console.checkpoints")),
]
