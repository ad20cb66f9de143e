"""Browser pages of the workbench: the annotator's page, the scene view, the artists' queue.

The pages are thin Django templates that load the Vite-built modules of `frontend/`; the
manifest Vite writes (`frontend/dist/.vite/manifest.json`) maps each entry to its hashed
files. The annotator page talks to the API itself (docs/annotation-api.md); the scene view and
the artist queue get their (small, read-only) data embedded in the page.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.templatetags.static import static
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from annotation.selectors import artist_queue as artist_queue_of
from annotation.selectors import scene_objects_for_user
from engine.errors import EngineError
from engine.models import Role
from engine.selectors import project_get_for_user

MANIFEST = Path(settings.BASE_DIR) / "frontend" / "dist" / ".vite" / "manifest.json"


@lru_cache(maxsize=4)
def _manifest(mtime: float) -> dict:
    return json.loads(MANIFEST.read_text())


def vite_tags(entry: str) -> str:
    """<link>/<script> tags for one Vite entry (e.g. 'src/pages/workbench.js'), from the manifest.

    Imported chunks get a modulepreload so the browser fetches them in parallel with the entry.
    """
    if not MANIFEST.exists():
        return mark_safe(
            '<p class="error">The front end is not built: run <code>make frontend</code> '
            "(npm ci &amp;&amp; npm run build in frontend/).</p>"
        )
    manifest = _manifest(MANIFEST.stat().st_mtime)
    css: list[str] = []
    preloads: list[str] = []
    seen: set[str] = set()

    def walk(key: str) -> None:
        if key in seen:
            return
        seen.add(key)
        chunk = manifest[key]
        css.extend(c for c in chunk.get("css", []) if c not in css)
        for imported in chunk.get("imports", []):
            preloads.append(manifest[imported]["file"])
            walk(imported)

    walk(entry)
    return format_html(
        "{}{}{}",
        format_html_join("", '<link rel="stylesheet" href="{}">', ((static(c),) for c in css)),
        format_html_join("", '<link rel="modulepreload" href="{}">', ((static(p),) for p in preloads)),
        format_html('<script type="module" src="{}"></script>', static(manifest[entry]["file"])),
    )


def _error(request, exc: EngineError):
    return render(request, "engine/error.html", {"message": exc.message}, status=exc.status)


@login_required
def annotate(request, slug: str):
    try:
        project = project_get_for_user(request.user, slug, roles=[Role.ANNOTATOR])
    except EngineError as exc:
        return _error(request, exc)
    return render(request, "workbench/annotate.html", {
        "project": project, "assets": vite_tags("src/pages/workbench.js"),
    })


@login_required
def scene(request, slug: str, image_id: int):
    try:
        project, image, objects = scene_objects_for_user(request.user, slug=slug, image_id=image_id)
    except EngineError as exc:
        return _error(request, exc)
    return render(request, "workbench/scene.html", {
        "project": project, "image": image, "objects": objects,
        "assets": vite_tags("src/pages/scene.js"),
    })


@login_required
def artist_queue(request, slug: str):
    try:
        project = project_get_for_user(request.user, slug, roles=[Role.ARTIST, Role.LEAD])
    except EngineError as exc:
        return _error(request, exc)
    items = artist_queue_of(project=project).prefetch_related("candidates", "judgements")[:50]
    rows = [{
        "item": it, "image": it.mask.image,
        "best_rating": max((j.rating for j in it.judgements.all() if j.rating is not None), default=None),
        "candidates": list(it.candidates.all()),
    } for it in items]
    return render(request, "workbench/artist_queue.html", {
        "project": project, "rows": rows, "assets": vite_tags("src/pages/artist.js"),
    })
