"""The workbench in a real browser: Debian's Chromium (software WebGL) against the live app."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from tests.browser.conftest import ARTIFACTS, N, login, make_items

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
BG = np.array([0x20, 0x24, 0x2C])


def lit_pixels(png: bytes) -> tuple[float, float]:
    """(share of pixels that are not the stage background, mean brightness of those pixels)."""
    from PIL import Image

    arr = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    fg = np.abs(arr - BG).sum(axis=2) > 40
    share = float(fg.mean())
    return share, float(arr[fg].mean()) if fg.any() else 0.0


def wait_rendered(page):
    """Both candidates of the comparison on screen (the viewer sets data-rendered after drawing)."""
    page.wait_for_function(
        """() => { const w = window.workbench; if (!w || !w.current) return false;
                   const want = w._pair().join(','); return document.querySelector('.wb-stage').dataset.rendered === want; }""")


def rate_a_three_candidate_run(page, first: str, second: str, rating: str) -> None:
    """Open the workbench's first item of three candidates and judge it by keyboard alone:
    `first` and `second` decide the two comparisons, `rating` the winner, then Enter."""
    page.wait_for_selector("#workbench[data-stage=compare]")
    wait_rendered(page)
    page.keyboard.press(first); page.wait_for_function("() => window.workbench.current.tournament.history.length === 1")
    page.keyboard.press(second); page.wait_for_selector("#workbench[data-stage=rate]")
    page.keyboard.press(rating); page.keyboard.press("Enter")


def test_two_items_with_the_keyboard_alone(live_server, page, project, member, api, frontend_built):
    annotator = member("annotator")
    make_items(project, count=3)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(page, live_server, annotator.username, f"/projects/{project.slug}/annotate/")

    seen_items = []
    for n in range(2):
        page.wait_for_selector("#workbench[data-stage=compare]")
        wait_rendered(page)
        seen_items.append(page.evaluate("window.workbench.current.item.id"))
        assert page.inner_text(".wb-progress .label") == f"comparison 1 of {N - 1}"
        if n == 0:
            page.wait_for_function("() => [...document.querySelectorAll('.wb-strip img')].every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(ARTIFACTS / "workbench-compare.png"))
            for side in ("left", "right"):
                share, brightness = lit_pixels(page.locator(f".wb-view[data-view={side}]").screenshot())
                assert share > 0.04, f"the {side} candidate is not visible ({share:.3f} of the view)"
                assert brightness > 60, f"the {side} candidate is too dark ({brightness:.0f})"
            keys = page.inner_text(".wb-keys")
            for label in ("left better", "equal", "right better", "undo", "skip item", "flag item", "turntable"):
                assert label in keys
        # 7 comparisons: alternate keys, and take one back with U to exercise undo.
        presses = ["1", "3", "2", "ArrowLeft", "ArrowRight", "1", "3"]
        for k, key in enumerate(presses, start=1):
            page.keyboard.press(key)
            if n == 0 and k == 2:
                page.keyboard.press("u")
                page.wait_for_function(f"() => window.workbench.current.tournament.history.length === {k - 1}")
                page.keyboard.press(key)
            page.wait_for_function(f"() => window.workbench.current.tournament.history.length === {k}")
            if k < N - 1:
                wait_rendered(page)
        page.wait_for_selector("#workbench[data-stage=rate]")
        page.keyboard.press("4")
        page.wait_for_selector(".wb-rate .rating.chosen")
        if n == 0:
            page.screenshot(path=str(ARTIFACTS / "workbench-rate.png"))
        page.keyboard.press("Enter")
        page.wait_for_function(f"() => document.querySelector('#workbench').dataset.done === '{n + 1}'")

    page.wait_for_selector("#workbench[data-stage=compare]")
    wait_rendered(page)
    assert page.inner_text(".wb-counter b") == "2"
    assert not errors, errors

    body = api(annotator).get(f"/api/v1/projects/{project.slug}/judgements").json()
    rows = body["results"] if isinstance(body, dict) else body
    assert sorted(r["item"] for r in rows) == sorted(seen_items)
    for r in rows:
        assert len(r["comparisons"]) == N - 1
        assert r["rating"] == 4 and r["layout"] is None
        assert r["winner"] in {c["left"] for c in r["comparisons"]} | {c["right"] for c in r["comparisons"]}
        assert r["time_spent_ms"] > 0

    # The scene view of the first photo: its judged object at its layout, and the GLB download.
    from annotation.models import Item

    image_id = Item.objects.get(pk=seen_items[0]).mask.image_id
    page.goto(f"{live_server.url}/projects/{project.slug}/images/{image_id}/scene/")
    page.wait_for_selector(".scene-stage[data-rendered='1']")
    page.screenshot(path=str(ARTIFACTS / "scene-view.png"))
    share, brightness = lit_pixels(page.locator(".scene-stage").screenshot())
    assert share > 0.01 and brightness > 60, (share, brightness)
    with page.expect_download() as download:
        page.keyboard.press("d")
    assert Path(download.value.path()).read_bytes()[:4] == b"glTF"


def test_layout_stage_and_memory_stay_flat(live_server, page, project, member, frontend_built):
    """The layout stage moves the winner with keys (undo included) and shows the overlap; the
    viewer's GPU memory does not grow when items change, with one WebGL context."""
    annotator = member("annotator")
    project.layout_stage = True
    project.save(update_fields=["layout_stage"])
    make_items(project, count=1, n=3, first_seed=31, depth=True, model=False)
    login(page, live_server, annotator.username, f"/projects/{project.slug}/annotate/")
    rate_a_three_candidate_run(page, "1", "1", "5")
    page.wait_for_selector("#workbench[data-stage=layout]")
    page.wait_for_function("() => document.querySelector('.wb-overlap b').textContent.includes('%')")
    before = page.evaluate("window.workbench.current.overlap")
    assert page.evaluate("window.workbench.current.cloud.length") > 300  # the depth map's point cloud
    assert before > 0.3, before  # the candidates' layouts are near the true one
    start = page.evaluate("JSON.stringify(window.workbench.current.layout)")
    # The winner (random sides) may sit left or right of the mask: move it well past it.
    for key in ["ArrowRight"] * 40:
        page.keyboard.press(key)
    page.wait_for_function(f"() => window.workbench.current.overlap < {before} - 0.1")
    page.screenshot(path=str(ARTIFACTS / "workbench-layout.png"))
    for _ in range(40):
        page.keyboard.press("u")
    assert page.evaluate("JSON.stringify(window.workbench.current.layout)") == start

    # Memory: load the same candidates into the viewer as 50 successive items.
    stats = page.evaluate("""async () => {
        const w = window.workbench; const v = w.viewer; const s = w.current;
        v.exitLayout();
        const ids = s.item.candidates.map(c => c.id);
        const seen = [];
        for (let i = 0; i < 50; i++) {
            v.clear();
            for (const id of ids) await v.load(id, (await s.glbs.get(id)).slice(0));
            v.show(ids.slice(0, 2)); v.render();
            seen.push({...v.renderer.info.memory});
        }
        return {seen, contexts: document.querySelectorAll('canvas.viewer-canvas').length};
    }""")
    seen = stats["seen"]
    assert seen[-1] == seen[0] == seen[len(seen) // 2], seen[:3]
    assert stats["contexts"] == 1


def test_hard_case_reaches_the_artist_queue(live_server, page, project, member, frontend_built):
    """A winner rated below alpha makes a hard case; an artist sees it with its rejected
    candidates and uploads a mesh from the queue page."""
    from annotation.models import Item, ItemState
    from modelzoo.mesh import glb_bytes
    from tests.engine.factories import MembershipFactory

    user = member("annotator")
    MembershipFactory(project=project, user=user, role="artist")
    (item,) = make_items(project, count=1, n=3, first_seed=41)
    login(page, live_server, user.username, f"/projects/{project.slug}/annotate/")
    rate_a_three_candidate_run(page, "3", "2", "1")
    page.wait_for_function("() => document.querySelector('#workbench').dataset.done === '1'")
    assert Item.objects.get(pk=item.pk).state == ItemState.HARD_CASE

    page.goto(f"{live_server.url}/projects/{project.slug}/artist-queue/")
    card = page.locator(f".hard-case[data-item='{item.pk}']")
    assert card.locator("figure img").count() == 3
    page.wait_for_function("() => [...document.querySelectorAll('.hard-case img')].every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(ARTIFACTS / "artist-queue.png"), full_page=True)
    v = np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [0, 0, 0.1]], np.float32)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
    card.locator("input[type=file]").set_input_files(
        files=[{"name": "artist.glb", "mimeType": "model/gltf-binary", "buffer": glb_bytes(v, f)}])
    card.locator("button").click()
    page.wait_for_function(f"() => document.querySelector(\".hard-case[data-item='{item.pk}'] .result\").textContent.startsWith('Uploaded')")
    assert Item.objects.get(pk=item.pk).artist_meshes.count() == 1


def test_full_ranking_with_ties_by_keyboard(live_server, page, project, member, api, frontend_built):
    annotator = member("annotator")
    project.ranking_protocol = "full_ranking"
    project.save(update_fields=["ranking_protocol"])
    make_items(project, count=1, n=4, first_seed=21)
    login(page, live_server, annotator.username, f"/projects/{project.slug}/annotate/")
    page.wait_for_selector("#workbench[data-stage=rank]")
    wait_rendered(page)
    order = page.evaluate("window.workbench.current.item.candidates.map(c => c.id)")
    c0, c1, c2, c3 = order
    page.keyboard.press("ArrowDown")        # select the second
    page.keyboard.press("Shift+ArrowUp")    # move it to the top
    page.keyboard.press("ArrowDown")        # select the (former) first, now second
    page.keyboard.press("t")                # tie it with the top one
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Shift+ArrowUp")    # last above third
    page.keyboard.press("u")                # ... and take that back
    wait_rendered(page)
    assert page.evaluate("window.workbench.current.ranking.groups()") == [[c1, c0], [c2], [c3]]
    page.screenshot(path=str(ARTIFACTS / "workbench-ranking.png"))
    page.keyboard.press("Enter")
    page.wait_for_selector("#workbench[data-stage=rate]")
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#workbench').dataset.done === '1'")
    rows = api(annotator).get(f"/api/v1/projects/{project.slug}/judgements").json()
    rows = rows["results"] if isinstance(rows, dict) else rows
    assert len(rows) == 1
    assert rows[0]["ranking"] == [[c1, c0], [c2], [c3]] and rows[0]["winner"] == c1


def test_pages_pass_the_content_security_policy(live_server, page, project, member, frontend_built):
    """The pages without WebGL, Swagger UI included, load under the policy (the `page` fixture fails
    the test on any violation; the workbench, scene view and artist queue are checked by the tests
    above)."""
    lead = member("lead")
    make_items(project, count=1, n=3, model=False)
    login(page, live_server, lead.username, f"/projects/{project.slug}/")
    page.wait_for_selector(".grid figure")  # (login's wait_for_url also matches the login page's ?next=)
    policy = page.request.get(f"{live_server.url}/").headers["content-security-policy"]
    assert "default-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert page.evaluate("getComputedStyle(document.querySelector('header')).display") == "flex"  # base.css
    page.wait_for_function("() => [...document.querySelectorAll('.grid img')].every(i => i.complete && i.naturalWidth > 0)")
    page.goto(f"{live_server.url}/projects/{project.slug}/dashboard/")
    page.wait_for_selector(".kpis svg, .card svg")
    assert page.evaluate("getComputedStyle(document.querySelector('.kpis')).display") == "grid"  # dashboard.css
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    page.goto(f"{live_server.url}/api/v1/docs/")
    page.wait_for_selector(".swagger-ui .opblock", timeout=60000)  # the schema fetched and rendered
    page.screenshot(path=str(ARTIFACTS / "api-docs.png"))
    # A violation on purpose, to show the watch works: an inline script is refused and reported.
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.x = 1';"
                  " document.body.append(s); }")
    page.wait_for_timeout(200)
    assert page.evaluate("window.x") is None and any("script-src" in v for v in page.csp_violations)
    page.csp_violations.clear()
