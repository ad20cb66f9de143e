"""Textured PBR meshes and Gaussian splats in the workbench, the layout stage and the scene view,
with pixel checks, in Debian's Chromium (software WebGL). Fixtures: tests/browser/representations.py."""
from __future__ import annotations

import io

import numpy as np
import pytest

from tests.browser.conftest import ARTIFACTS, login, make_items
from tests.browser.representations import GREEN, MAGENTA, ORANGE, make_representation_items
from tests.browser.test_workbench import lit_pixels, wait_rendered

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def pixels(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def share_near(arr: np.ndarray, rgb, tolerance: float = 0.16) -> float:
    """Share of the pixels whose colour is `rgb` up to shading: the same chromaticity (r:g:b
    proportions) within `tolerance`, and not dark."""
    total = arr.sum(axis=2, keepdims=True)
    chroma = arr / np.maximum(total, 1)
    want = np.asarray(rgb, float) / sum(rgb)
    close = np.abs(chroma - want).max(axis=2) < tolerance * want.max()
    return float((close & (total[..., 0] > 120)).mean())


def view_png(page, side: str) -> bytes:
    return page.locator(f".wb-view[data-view={side}]").screenshot()


def wait_drawn(page, as_: str):
    """Both candidates of the comparison on screen, each drawn as `as_` ('mesh' or 'splat')."""
    page.wait_for_function(
        """(as) => { const w = window.workbench; if (!w || !w.current) return false;
                     const st = document.querySelector('.wb-stage').dataset;
                     return st.rendered === w._pair().join(',') && st.renderedAs === w._pair().map(() => as).join(','); }""",
        arg=as_)


def test_textured_candidates_show_their_texture_in_every_mode(live_server, page, project, member, frontend_built):
    """A TRELLIS-style PBR GLB shows its base-colour texture (both checker colours) under image-based
    lighting; G shows the bare shape, W the wireframe, P says there is no splat to show."""
    annotator = member("annotator")
    make_representation_items(project, kinds=["textured"] * 3, judged="textured")
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(page, live_server, annotator.username, f"/projects/{project.slug}/annotate/")
    page.wait_for_selector("#workbench[data-stage=compare]")
    wait_drawn(page, "mesh")
    assert page.evaluate("document.querySelector('#workbench').dataset.viewMode") == "textured"
    assert "judged: textured" in page.inner_text(".wb-modes")
    assert "textured" in page.inner_text(".wb-view[data-view=left] .poly")
    page.screenshot(path=str(ARTIFACTS / "workbench-textured.png"))
    for side in ("left", "right"):
        arr = pixels(view_png(page, side))
        assert share_near(arr, MAGENTA) > 0.01, f"the {side} candidate's magenta squares are not drawn"
        assert share_near(arr, GREEN) > 0.01, f"the {side} candidate's green squares are not drawn"

    page.keyboard.press("g")
    wait_drawn(page, "mesh")
    page.wait_for_function("() => document.querySelector('#workbench').dataset.viewMode === 'geometry'")
    page.wait_for_timeout(300)  # the frame after the mode change
    page.screenshot(path=str(ARTIFACTS / "workbench-geometry.png"))
    arr = pixels(view_png(page, "left"))
    share, brightness = lit_pixels(view_png(page, "left"))
    assert share > 0.04 and brightness > 60, (share, brightness)
    assert share_near(arr, MAGENTA) < 0.002 and share_near(arr, GREEN) < 0.002, "geometry mode still shows the texture"

    page.keyboard.press("w")
    page.wait_for_function("() => document.querySelector('#workbench').dataset.viewMode === 'wireframe'")
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / "workbench-wireframe.png"))
    arr = pixels(view_png(page, "left"))
    assert share_near(arr, (0x9F, 0xE0, 0xFF), 0.1) > 0.005, "no wireframe lines"
    assert share_near(arr, MAGENTA) < 0.002

    page.keyboard.press("p")  # these candidates have no splat: drawn as their mesh, and the page says so
    page.wait_for_function("() => document.querySelector('#workbench').dataset.viewMode === 'splat'")
    wait_drawn(page, "mesh")
    assert page.inner_text(".wb-view[data-view=left] .note") == "no splat: drawn as its mesh"
    assert page.is_visible(".wb-view[data-view=right] .note")
    page.keyboard.press("c")
    page.wait_for_function("() => document.querySelector('#workbench').dataset.viewMode === 'textured'")
    assert not page.is_visible(".wb-view[data-view=left] .note")
    assert not errors, errors


def test_splats_in_both_views_the_layout_stage_and_the_mode_keys(live_server, page, project, member, api,
                                                                 frontend_built):
    """The built-in model's candidates (mesh and splat) in a project that judges splats: both views
    draw splats, C/P switch to the mesh and back, the winner's splat goes through the layout stage
    (its projection over the photo, its mask overlap, the gizmo on its bounds)."""
    annotator = member("annotator")
    project.judged_representation = "splat"
    project.layout_stage = True
    project.save(update_fields=["judged_representation", "layout_stage"])
    make_items(project, count=1, n=3, first_seed=31)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    login(page, live_server, annotator.username, f"/projects/{project.slug}/annotate/")
    page.wait_for_selector("#workbench[data-stage=compare]")
    candidates = page.evaluate("window.workbench.current.item.candidates")
    if not all(c["splat_url"] for c in candidates):
        pytest.skip("the built-in checkpoint is not in the repository: its candidates carry no splat")
    wait_drawn(page, "splat")
    assert page.evaluate("document.querySelector('#workbench').dataset.viewMode") == "splat"
    page.screenshot(path=str(ARTIFACTS / "workbench-splat.png"))
    for side in ("left", "right"):
        share, brightness = lit_pixels(view_png(page, side))
        assert share > 0.04, f"the {side} splat is not visible ({share:.3f} of the view)"
        assert brightness > 40, (side, brightness)
    gaussians = page.evaluate("window.workbench.viewer.info().splatMeshes")
    assert gaussians >= 2
    # the crops over the photo show the splats' projection (pixels differ from the bare photo)
    with_overlay = pixels(page.locator(".wb-crop figure").first.screenshot())
    page.keyboard.press("o")
    page.wait_for_timeout(200)
    without = pixels(page.locator(".wb-crop figure").first.screenshot())
    page.keyboard.press("o")
    assert np.abs(with_overlay - without).sum(axis=2).astype(bool).mean() > 0.05

    page.keyboard.press("c")  # the same candidates as textured meshes
    wait_drawn(page, "mesh")
    assert page.evaluate("document.querySelector('#workbench').dataset.viewMode") == "textured"
    page.keyboard.press("p")
    wait_drawn(page, "splat")

    page.keyboard.press("1")
    page.wait_for_function("() => window.workbench.current.tournament.history.length === 1")
    wait_drawn(page, "splat")
    page.keyboard.press("1")
    page.wait_for_selector("#workbench[data-stage=rate]")
    page.keyboard.press("4")
    page.keyboard.press("l")
    page.wait_for_selector("#workbench[data-stage=layout]")
    page.wait_for_function("() => document.querySelector('.wb-stage').dataset.layoutRendered === '1'")
    page.wait_for_function("() => document.querySelector('.wb-overlap b').textContent.includes('%')")
    overlap = page.evaluate("window.workbench.current.overlap")
    assert overlap > 0.2, overlap  # the splat's discs over the mask
    page.screenshot(path=str(ARTIFACTS / "workbench-layout-splat.png"))
    share, _ = lit_pixels(page.locator(".wb-layout-view").screenshot())
    assert share > 0.3  # the photo, the splat and the gizmo
    page.keyboard.press("g")  # move mode; then a nudge moves the splat
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"() => window.workbench.current.overlap !== {overlap}")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#workbench').dataset.done === '1'")
    rows = api(annotator).get(f"/api/v1/projects/{project.slug}/judgements").json()
    rows = rows["results"] if isinstance(rows, dict) else rows
    assert rows[0]["layout"] is not None
    assert not errors, errors


def test_splat_only_candidates_and_the_scene_view(live_server, page, project, member, frontend_built):
    """SAM 3D-style splats without a mesh in a project that judges geometry: drawn as their splats
    with a note saying so; the judged winner's splat in the scene view."""
    annotator = member("annotator")
    (item,) = make_representation_items(project, kinds=["splat"] * 2, judged="geometry", first_seed=81)
    login(page, live_server, annotator.username, f"/projects/{project.slug}/annotate/")
    page.wait_for_selector("#workbench[data-stage=compare]")
    wait_drawn(page, "splat")
    assert page.inner_text(".wb-view[data-view=left] .note") == "no mesh: drawn as its splat"
    for side in ("left", "right"):
        arr = pixels(view_png(page, side))
        assert share_near(arr, ORANGE) > 0.02, f"the {side} splat's orange is not drawn"
    page.keyboard.press("3")
    page.wait_for_selector("#workbench[data-stage=rate]")
    page.keyboard.press("5")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#workbench').dataset.done === '1'")

    page.goto(f"{live_server.url}/projects/{project.slug}/images/{item.mask.image_id}/scene/")
    page.wait_for_selector(".scene-stage[data-rendered='1']")
    assert "as Gaussian splats" in page.inner_text("#scene-view .status")
    page.screenshot(path=str(ARTIFACTS / "scene-view-splat.png"))
    assert share_near(pixels(page.locator(".scene-stage").screenshot()), ORANGE) > 0.002


def test_gpu_memory_stays_flat_across_50_items_of_meshes_and_splats(live_server, page, project, member,
                                                                    frontend_built):
    """The viewer loads, draws and clears an item of a textured mesh and two splats 50 times: three's
    geometries and textures (Spark's splat buffers are textures) and Spark's capacity stop growing."""
    annotator = member("annotator")
    make_representation_items(project, kinds=["textured", "mesh+splat", "splat"], judged="splat", first_seed=91)
    login(page, live_server, annotator.username, f"/projects/{project.slug}/annotate/")
    page.wait_for_selector("#workbench[data-stage=compare]")
    wait_rendered(page)  # the textured one is drawn as its mesh, the others as splats
    seen = page.evaluate("""async () => {
        const w = window.workbench, v = w.viewer;
        const cands = w.current.item.candidates;
        const bytes = async (url) => (await fetch(url)).arrayBuffer();
        const meshes = {}, splats = {};
        for (const c of cands) {
            if (c.glb_compact_url) meshes[c.id] = await bytes(c.glb_compact_url);
            if (c.splat_url) splats[c.id] = await bytes(c.splat_url);
        }
        const frame = () => new Promise((r) => requestAnimationFrame(r));
        const seen = [];
        for (let i = 0; i < 50; i++) {
            v.clear();
            for (const c of cands) {
                if (meshes[c.id]) await v.load(c.id, meshes[c.id].slice(0));
                if (splats[c.id]) await v.loadSplat(c.id, new Uint8Array(splats[c.id].slice(0)));
            }
            const [a, b, s] = cands.map((c) => c.id);
            v.show([a, s], {as: ['mesh', 'splat']}); v.render(); await frame();
            v.show([b, s], {as: ['splat', 'splat']}); v.render(); await frame(); await frame();
            const info = v.info();
            seen.push({geometries: info.geometries, textures: info.textures, splatMeshes: info.splatMeshes,
                       sparkCapacity: info.sparkCapacity, programs: info.programs});
        }
        return seen;
    }""")
    assert seen[0]["splatMeshes"] == 2 and seen[0]["textures"] > 0
    warm = seen[4]  # Spark sizes its buffers over the first frames
    assert seen[25] == warm and seen[-1] == warm, (seen[:6], seen[-1])
    assert page.evaluate("document.querySelectorAll('canvas.viewer-canvas').length") == 1
