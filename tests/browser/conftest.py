"""Browser-test fixtures: real photos and real candidate meshes, a served app, Debian's Chromium.

The photos come from the synthetic render-paste sampler (modelzoo.synth), so each has a real
object, mask and camera. Candidates are made by the generation task when the bootstrap
checkpoint is in the repository; otherwise they are real meshes of the photographed shape
(marching cubes of perturbed occupancies, GLB and compact GLB by modelzoo.mesh) stored
content-addressed as the generator would, with layouts around the true one.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

# Playwright's sync API keeps an event loop on the main thread; the test's own ORM calls are
# synchronous and safe, so tell Django not to refuse them (pytest-playwright's documented advice).
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-background-networking", "--disable-component-update",
]
N = 8
PASSWORD = "correct-horse-battery"  # tests.engine.factories.UserFactory


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _candidate_meshes(sample, n: int, seed: int):
    """n plausible candidates for one synthetic object: its occupancy, perturbed, meshed."""
    from scipy import ndimage

    from modelzoo.generators.base import Layout
    from modelzoo.mesh import occupancy_to_mesh

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        occ = sample.occupancy.astype(np.float32)
        if i % 3 == 1:
            occ = ndimage.binary_dilation(occ > 0.5, iterations=1).astype(np.float32)
        elif i % 3 == 2:
            occ = np.clip(occ + rng.normal(0, 0.45, occ.shape), 0, 1).astype(np.float32)
        occ = ndimage.gaussian_filter(occ, 0.8)
        v, f = occupancy_to_mesh(occ)
        tint = np.clip(sample.color * (0.75 + 0.5 * rng.random(3)), 0, 1)
        shade = 0.85 + 0.15 * (v[:, 1:2] - v[:, 1].min()) / max(1e-6, np.ptp(v[:, 1]))
        colours = np.concatenate([np.clip(tint * shade * 255, 0, 255), np.full((len(v), 1), 255)], axis=1)
        t = np.asarray(sample.layout.translation, float) + rng.normal(0, 0.03 * (i > 0), 3)
        q = np.asarray(sample.layout.rotation, float) + rng.normal(0, 0.08 * (i > 0), 4)
        q /= np.linalg.norm(q)
        s = np.asarray(sample.layout.scale, float) * (1 + rng.normal(0, 0.06 * (i > 0)))
        out.append((v, f, colours.astype(np.uint8), Layout(tuple(q), tuple(t), tuple(s))))
    return out


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr.astype(np.float32))
    return buf.getvalue()


def make_items(project, *, count: int, n: int = N, first_seed: int = 11, depth: bool = False,
               model: bool = True) -> list:
    """`count` ready items of `project`, each with n real candidates (and the photo's depth map).

    model=False forces the fixture meshes, whose layouts sit near the true one: for tests of the
    layout tool that must not depend on how good the checkpoint's layouts are."""
    from annotation.models import Item, ItemState
    from annotation.states import item_transition
    from engine.files import store_content_addressed
    from engine.ingest.services import ingest_item
    from engine.ingest.validation import ItemInput, MaskInput
    from engine.services import round_current
    from engine.rounds import generate
    from modelzoo import services as zoo
    from modelzoo.mesh import glb_bytes, glb_compact_bytes, preview_png
    from modelzoo.models import Candidate, Checkpoint
    from modelzoo.synth.scene import sample_scene

    project.candidates_per_item = n
    project.save(update_fields=["candidates_per_item"])
    masks = []
    for k in range(count):
        sample = sample_scene(first_seed + k, size=160)
        image = ingest_item(project=project, item=ItemInput(
            name=f"synth{k}.png", image_bytes=_png(sample.image), intrinsics=sample.intrinsics.tolist(),
            depth_bytes=_npy(sample.depth) if depth else None, depth_name="depth.npy" if depth else "",
            masks=[MaskInput(source_name="object", label=sample.shape.kind if hasattr(sample.shape, "kind") else "object",
                             array=sample.mask)],
        )).image
        masks.append((image.masks.first(), sample))

    if model and zoo.BOOTSTRAP_FILE.exists() and os.environ.get("BROWSER_TEST_MESHES") != "synthetic":
        from engine.rounds.tasks import generate_item

        ckpt, _ = zoo.bootstrap_register(make_current=False)
        zoo.project_mix_set(project=project, mix=[(ckpt, 1.0)])
        job = generate.generation_job_start(project=project, steps=1)
        for job_item in job.job_items.all():
            generate_item.run(job_item.pk)
        return list(Item.objects.filter(project=project, state=ItemState.READY).order_by("id"))

    ckpt, _ = Checkpoint.objects.get_or_create(name="synthetic-fixture", version="1", defaults={"backend": "fixture"})
    rnd = round_current(project=project)
    items = []
    for k, (mask, sample) in enumerate(masks):
        item = Item.objects.create(project=project, round=rnd, mask=mask)
        for i, (v, f, c, layout) in enumerate(_candidate_meshes(sample, n, seed=1000 + k)):
            full, compact = glb_bytes(v, f, c), glb_compact_bytes(v, f, c)
            Candidate.objects.create(
                item=item, checkpoint=ckpt, seed=i, steps=1, layout=layout.as_dict(),
                glb=store_content_addressed(folder="candidates", extension="glb", data=full),
                glb_compact=store_content_addressed(folder="candidates", extension="glb", data=compact),
                preview=store_content_addressed(folder="previews", extension="png", data=preview_png(v, f, c)),
                num_vertices=len(v), num_faces=len(f),
            )
        items.append(item_transition(item=item, to=ItemState.READY))
    return items


@pytest.fixture(scope="session")
def frontend_built():
    manifest = ROOT / "frontend" / "dist" / ".vite" / "manifest.json"
    if not manifest.exists():
        pytest.fail("frontend/dist is missing: run `make frontend` (npm ci && npm run build in frontend/).")
    return manifest


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (make browser)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


# Every page a test opens must pass the Content-Security-Policy (engine/csp.py): the page reports
# each violation as a `securitypolicyviolation` event, Chromium logs it on the console too. (Give
# wait_for_function a function, "() => ...": Playwright runs a bare expression through the page's
# eval, which the policy refuses.)
_WATCH_CSP = """document.addEventListener('securitypolicyviolation', (e) => console.error(
  `CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'} on ${e.documentURI}`
  + (e.sourceFile ? ` (${e.sourceFile}:${e.lineNumber})` : '')));"""


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.add_init_script(_WATCH_CSP)
    pg = context.new_page()
    pg.set_default_timeout(45000)  # 2 shared cores: software WebGL can stall under load
    violations: list[str] = []
    pg.on("console", lambda m: violations.append(m.text) if (
        "CSP violation" in m.text or "Content Security Policy" in m.text) else None)
    pg.csp_violations = violations
    in_flight = set()
    pg.on("request", lambda r: in_flight.add(r))
    pg.on("requestfinished", lambda r: in_flight.discard(r))
    pg.on("requestfailed", lambda r: in_flight.discard(r))
    yield pg
    # Leaving the page sends its last requests (the workbench releases its leases on `pagehide`):
    # let the app answer them before the test's database is flushed, or the flush can deadlock
    # with a request still holding row locks.
    pg.goto("about:blank")
    for _ in range(200):
        if not in_flight:
            break
        pg.wait_for_timeout(50)
    context.close()
    assert not violations, "the Content-Security-Policy was violated:\n" + "\n".join(violations)


def login(page, live_server, username: str, next_url: str):
    page.goto(f"{live_server.url}/accounts/login/?next={next_url}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.keyboard.press("Enter")
    # The login page's own URL ends with ?next=NEXT_URL, so a glob on the URL would match before the
    # login went through: wait until the path itself is the page asked for.
    page.wait_for_url(lambda url: urlsplit(url).path == urlsplit(next_url).path)
