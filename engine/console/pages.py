"""What every console page shares: the navigation, the Vite assets, errors as pages."""
from __future__ import annotations

from dataclasses import dataclass

from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from annotation.workbench import vite_tags
from engine.errors import EngineError
from engine.models import Project

# (area, label, URL name, key). Each project area's URL takes the project's slug. An area whose
# URL is not mounted (yet) is shown greyed out rather than breaking the page.
NAV = (
    ("projects", "Projects", "console-project", "p"),
    ("import", "Import", "console-import", "i"),
    ("rounds", "Rounds", "console-rounds", "r"),
    ("review", "Review", "console-review", "v"),
    ("snapshots", "Snapshots", "console-snapshots", "s"),
    ("checkpoints", "Checkpoints", "console-checkpoints", "c"),
    ("dashboard", "Dashboard", "dashboard", "d"),
)


@dataclass(frozen=True)
class NavLink:
    area: str
    label: str
    url: str | None
    key: str
    current: bool


def nav_links(project: Project | None, area: str) -> list[NavLink]:
    links = []
    for name, label, url_name, key in NAV:
        url = None
        if name == "projects" and project is None:
            url = reverse("console-projects")
        elif project is not None:
            try:
                url = reverse(url_name, kwargs={"slug": project.slug})
            except NoReverseMatch:
                url = None
        links.append(NavLink(name, label, url, key, name == area))
    return links


def console_render(request, template: str, context: dict | None = None, *, area: str,
                   project: Project | None = None, entry: str | None = "src/console/console.js", status: int = 200):
    """Render a console page: `area` is the navigation's current item, `entry` the page's Vite module."""
    context = dict(context or {})
    context.update({
        "project": project, "area": area, "nav": nav_links(project, area),
        "assets": vite_tags(entry) if entry else "",
    })
    return render(request, template, context, status=status)


def console_error(request, exc: EngineError, *, area: str, project: Project | None = None):
    return console_render(request, "console/error.html", {"message": exc.message}, area=area, project=project,
                          status=exc.status)
