"""The snapshots pages: the definition form, a built snapshot's card, files and what changed since
the previous one; the card's Markdown is rendered with everything escaped."""
from __future__ import annotations

import pytest

from engine.console import markdown
from engine.exports import services
from engine.exports.models import Snapshot
from tests.stats.conftest import world  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db


def _built(project, rounds, **kw):
    snap, _ = services.snapshot_define(project=project, kind="dpo", format="jsonl", filters={"rounds": rounds},
                                       pairing="recorded", keep_ties=True, **kw)
    return services.snapshot_build(snapshot_id=snap.pk)


def test_a_built_snapshot_shows_its_card_files_and_the_change_since_the_previous(client, world):  # noqa: F811
    project = world["project"]
    first = _built(project, [1])
    second = _built(project, [1, 2])
    assert first.state == second.state == Snapshot.State.DONE
    client.force_login(world["lead"])
    page = client.get(f"/console/projects/{project.slug}/snapshots/{second.pk}/").content.decode()
    readme = next(f for f in second.manifest["files"] if f["path"] == "README.md")
    assert f'href="/api/v1/snapshots/{second.pk}/files/README.md"' in page and readme["sha256"] in page
    assert "<h1>" in page and "<details class=\"front-matter\">" in page  # the card, rendered
    changes = client.get(f"/api/v1/snapshots/{second.pk}/changes/").json()
    assert changes["previous"]["id"] == first.pk
    rows = {c["name"]: c for c in changes["counts"]}
    assert rows["rows"]["after"] - rows["rows"]["before"] == rows["rows"]["delta"] == \
        second.rows_total - first.rows_total > 0  # round 2's judgement adds pairs
    assert {"name": "filters.rounds", "before": [1], "after": [1, 2]} in changes["settings"]
    assert f'Compared with <a href="/console/projects/{project.slug}/snapshots/{first.pk}/">#{first.pk}</a>' in page
    assert client.get(f"/api/v1/snapshots/{first.pk}/changes/").json() == {"previous": None}
    listing = client.get(f"/console/projects/{project.slug}/snapshots/").content.decode()
    assert f'data-snapshot="{first.pk}"' in listing and 'id="snapshot-define"' in listing


def test_annotators_see_no_snapshots(client, world):  # noqa: F811
    snap = _built(world["project"], [1])
    client.force_login(world["alice"])
    assert client.get(f"/console/projects/{world['project'].slug}/snapshots/{snap.pk}/").status_code == 403
    assert client.get(f"/api/v1/snapshots/{snap.pk}/changes/").status_code == 403


def test_markdown_escapes_what_it_does_not_render():
    html = markdown.render("---\nlicense: x\n---\n# Title <b>\n\nSome `code` and **bold** and <script>alert(1)</script>."
                           "\n\n| a | b |\n|---|---|\n| 1 | <i>2</i> |\n\n- one\n- [link](https://example.org)\n\n"
                           "```python\nprint('<x>')\n```\n")
    assert "<h1>Title &lt;b&gt;</h1>" in html and "<code>code</code>" in html and "<strong>bold</strong>" in html
    assert "<script>" not in html and "&lt;script&gt;" in html and "<td>&lt;i&gt;2&lt;/i&gt;</td>" in html
    assert '<a href="https://example.org" rel="noopener">link</a>' in html
    assert "print(&#x27;&lt;x&gt;&#x27;)" in html and "license: x" in html
