"""Benchmark of the annotator workbench in headless Chromium (not a timed test).

Serves the app on 127.0.0.1 against its own PostgreSQL database, with real candidates (N = 8)
as in tests/browser, and measures:
  * first render: navigation -> both candidates of the first comparison drawn (cold cache);
  * next item: Enter on the rating -> the next item's first pair drawn (prefetch in play);
  * bytes per item (everything the page downloads for an item) and KB per candidate (compact GLB);
  * renderer.info.memory after each item (must stay flat).
Targets: first render <= 1.5 s, next item <= 300 ms, <= 150 KB per candidate.
Then the real models' outputs (issue 14), stored by the engine's own encoding step
(tests/browser/representations.py): items of 8 TRELLIS.2-style textured GLBs (2048 px PBR
textures as received) judged "textured", and items of two SAM 3D-style 300k-Gaussian splats
judged "splat": KB per candidate on the wire (targets 1024 and 4096), first render and next item
of the textured items (targets 2 s and 0.5 s), first render of the splat items.
The LAST line printed is one JSON object.

    DATABASE_URL=postgres://... .venv/bin/python bench/workbench.py [--items 6] [--loads 5]
        [--gaussians 300000] [--no-representations]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile

import harness
from harness import ROOT

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "engine.settings_test")
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
os.environ.setdefault("CACHE_URL", "redis://127.0.0.1:6379/12")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=6, help="items judged in the next-item run")
    ap.add_argument("--loads", type=int, default=5, help="cold page loads for the first-render time")
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--gaussians", type=int, default=300_000, help="Gaussians per splat candidate")
    ap.add_argument("--splat-loads", type=int, default=2, help="cold page loads of a splat item")
    ap.add_argument("--no-representations", action="store_true", help="only the built-in meshes")
    args = ap.parse_args()

    import django
    from django.conf import settings

    django.setup()
    from django.db import connections

    connections["default"].settings_dict.setdefault("TEST", {})["NAME"] = "bench_workbench"
    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = "bench_workbench"  # not the test suite's
    media = tempfile.mkdtemp(prefix="bench-media-")
    settings.MEDIA_ROOT = media
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    from django.core.files.storage import default_storage

    default_storage.__dict__.pop("_wrapped", None)
    default_storage._setup()

    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.db import connection
    from django.test.testcases import LiveServerThread
    from django.test.utils import setup_test_environment

    manifest = ROOT / "frontend" / "dist" / ".vite" / "manifest.json"
    if not manifest.exists():
        sys.exit("frontend/dist is missing: run `make frontend` first.")
    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    server = None
    try:
        from django.core.cache import cache

        cache.clear()
        from engine.models import Membership, Role
        from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, PASSWORD, make_items
        from tests.engine.factories import ProjectFactory, UserFactory

        loads_project = ProjectFactory(slug="bench-loads")
        run_project = ProjectFactory(slug="bench-run")
        user = UserFactory(username="bench-annotator")
        for p in (loads_project, run_project):
            Membership.objects.create(project=p, user=user, role=Role.ANNOTATOR)
        make_items(loads_project, count=args.loads + 1, n=args.candidates, first_seed=51)
        make_items(run_project, count=args.items + 1, n=args.candidates, first_seed=61)
        if not args.no_representations:
            from tests.browser.representations import make_representation_items

            for slug, kinds, count, extra in (
                    ("bench-textured-loads", ["textured"] * 8, args.loads, {"texture_px": 2048}),
                    ("bench-textured-run", ["textured"] * 8, args.items + 1, {"texture_px": 2048}),
                    ("bench-splat-loads", ["splat"] * 2, args.splat_loads, {"gaussians": args.gaussians})):
                project = ProjectFactory(slug=slug)
                Membership.objects.create(project=project, user=user, role=Role.ANNOTATOR)
                make_representation_items(project, kinds=kinds, count=count, first_seed=81,
                                          judged=kinds[0], **extra)

        server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
        server.daemon = True
        server.start()
        server.is_ready.wait()
        if server.error:
            raise server.error
        base = f"http://127.0.0.1:{server.port}"

        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            result = run(browser, base, user.username, PASSWORD, args)
            if not args.no_representations:
                result["representations"] = run_representations(browser, base, user.username, PASSWORD, args)
            browser.close()
    finally:
        if server is not None:
            server.terminate()
        connection.creation.destroy_test_db(old_name, verbosity=0)
    report(result, args)


def login(context, base, username, password):
    page = context.new_page()
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{base}/")
    page.close()


RENDERED = """() => { const w = window.workbench; if (!w || !w.current) return false;
  return document.querySelector('.wb-stage').dataset.rendered === w._pair().join(','); }"""


def first_renders(browser, base, username, password, slug: str, loads: int, timeout_ms: int = 30000) -> list[float]:
    """Cold page loads of the project's workbench: seconds from navigation to the first pair drawn."""
    first = []
    for _ in range(loads):
        context = browser.new_context(viewport={"width": 1280, "height": 860})  # cold cache
        login(context, base, username, password)
        page = context.new_page()
        page.on("pageerror", lambda e: print("page error:", e, file=sys.stderr))
        page.goto(f"{base}/projects/{slug}/annotate/")
        page.wait_for_function(RENDERED, timeout=timeout_ms)
        first.append(page.evaluate("window.workbench.timings.firstRender") / 1000)
        context.close()
    return first


def wire_kb(page, pattern: str) -> list[float]:
    """KB on the wire of every resource the page fetched whose URL matches `pattern` (a JS regex)."""
    sizes = page.evaluate(f"""() => performance.getEntriesByType('resource')
      .filter(r => /{pattern}/.test(r.name)).map(r => r.encodedBodySize || r.transferSize)""")
    return [b / 1024 for b in sizes if b]


def run_representations(browser, base, username, password, args) -> dict:
    textured_first = first_renders(browser, base, username, password, "bench-textured-loads", args.loads)
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    login(context, base, username, password)
    page = context.new_page()
    page.goto(f"{base}/projects/bench-textured-run/annotate/")
    judge_items(page, args.items, n_comparisons=7)
    textured_next = page.evaluate("window.workbench.timings.nextItem")
    textured_kb = wire_kb(page, "\\/candidates\\/\\d+\\/glb-compact$")
    context.close()

    splat_first, splat_kb = [], []
    for _ in range(args.splat_loads):
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        login(context, base, username, password)
        page = context.new_page()
        page.goto(f"{base}/projects/bench-splat-loads/annotate/")
        page.wait_for_function(RENDERED, timeout=300000)  # software GL sorts and draws every Gaussian
        splat_first.append(page.evaluate("window.workbench.timings.firstRender") / 1000)
        splat_kb += wire_kb(page, "\\/candidates\\/\\d+\\/splat$")
        context.close()
    return {"textured_first": textured_first, "textured_next": [t / 1000 for t in textured_next],
            "textured_kb": textured_kb, "splat_first": splat_first, "splat_kb": splat_kb}


def judge_items(page, items: int, n_comparisons: int) -> None:
    """Judge `items` items with the keyboard alone, as an annotator does, waiting for each pair drawn."""
    for _ in range(items):
        page.wait_for_function(RENDERED, timeout=30000)
        item_id = page.evaluate("window.workbench.current.item.id")
        for k in range(1, n_comparisons + 1):
            page.keyboard.press("1" if k % 2 else "3")
            page.wait_for_function(f"() => window.workbench.current.tournament.history.length === {k}")
            if k < n_comparisons:
                page.wait_for_function(RENDERED)
        page.keyboard.press("4")
        page.wait_for_timeout(150)  # the annotator's glance at the rating; prefetch finishes in the meantime
        page.keyboard.press("Enter")
        page.wait_for_function(f"() => window.workbench.current && window.workbench.current.item.id !== {item_id}"
                               f" && window.workbench.current.firstRendered", timeout=30000)


def run(browser, base, username, password, args) -> dict:
    first = first_renders(browser, base, username, password, "bench-loads", args.loads)

    context = browser.new_context(viewport={"width": 1280, "height": 860})
    login(context, base, username, password)
    page = context.new_page()
    page.goto(f"{base}/projects/bench-run/annotate/")
    judge_items(page, args.items, n_comparisons=args.candidates - 1)
    page.evaluate("() => Promise.all([...window.workbench.current.glbs.values()])")
    data = page.evaluate("""() => {
      const w = window.workbench;
      const res = performance.getEntriesByType('resource');
      const glb = res.filter(r => /\\/candidates\\/\\d+\\/glb-compact$/.test(r.name));
      const preview = res.filter(r => /\\/candidates\\/\\d+\\/preview$/.test(r.name));
      return {next: w.timings.nextItem, memory: w.timings.memory,
              glb: glb.map(r => r.encodedBodySize || r.transferSize), preview: preview.map(r => r.encodedBodySize || r.transferSize),
              glbFetched: w.api.bytesReceived,
              api: res.filter(r => /next-item|judgements$/.test(r.name)).map(r => [r.name.split('/').pop(), Math.round(r.duration)])};
    }""")
    context.close()
    return {"first": first, "items_shown": args.items + 1, **data}


def report(r: dict, args) -> None:
    first = statistics.median(r["first"])
    nxt = [t / 1000 for t in r["next"]]
    next_med = statistics.median(nxt) if nxt else float("nan")
    glb_kb = [b / 1024 for b in r["glb"] if b]
    kb_cand = statistics.median(glb_kb) if glb_kb else float("nan")
    preview_kb = statistics.median([b / 1024 for b in r["preview"] if b] or [0])
    # photo + N compact GLBs (everything api.js downloaded, over every item shown) + N previews
    item_kb = r["glbFetched"] / r["items_shown"] / 1024 + preview_kb * args.candidates
    mem = r["memory"]
    flat = all(m == mem[0] for m in mem)
    print(f"workbench bench: N = {args.candidates}, {args.loads} cold loads, {args.items} items judged")
    print(f"{'figure':34} {'median':>9} {'min':>9} {'max':>9} {'target':>9}")
    print(f"{'first render (s)':34} {first:9.3f} {min(r['first']):9.3f} {max(r['first']):9.3f} {'<= 1.5':>9}")
    if nxt:
        print(f"{'submit -> next item shown (s)':34} {next_med:9.3f} {min(nxt):9.3f} {max(nxt):9.3f} {'<= 0.3':>9}")
    print(f"{'compact GLB per candidate (KB)':34} {kb_cand:9.1f} {min(glb_kb):9.1f} {max(glb_kb):9.1f} {'<= 150':>9}")
    print(f"{'preview per candidate (KB)':34} {preview_kb:9.1f}")
    print(f"{'bytes per item (KB, incl. previews)':34} {item_kb:9.1f}")
    print(f"renderer.info.memory as each item leaves: {mem[0] if mem else {}} ... {mem[-1] if mem else {}} "
          f"({'flat' if flat else 'NOT flat'})")
    if os.environ.get("BENCH_VERBOSE"):
        print("API request durations (ms):", r.get("api"))
    figures = {}
    rep = r.get("representations")
    if rep:
        med = lambda xs: round(statistics.median(xs), 3) if xs else None  # noqa: E731
        figures = {
            "textured_kb_per_candidate": round(statistics.median(rep["textured_kb"]), 1),
            "splat_kb_per_candidate": round(statistics.median(rep["splat_kb"]), 1),
            "textured_first_render_s": med(rep["textured_first"]), "textured_next_item_s": med(rep["textured_next"]),
            "splat_first_render_s": med(rep["splat_first"]), "gaussians_per_splat": args.gaussians,
        }
        print(f"\nreal models' outputs: items of 8 textured GLBs (2048 px textures received), "
              f"items of 2 splats of {args.gaussians:,} Gaussians")
        for name, key, target in (("textured KB per candidate", "textured_kb_per_candidate", "<= 1024"),
                                  ("splat KB per candidate", "splat_kb_per_candidate", "<= 4096"),
                                  ("textured first render (s)", "textured_first_render_s", "<= 2"),
                                  ("textured next item (s)", "textured_next_item_s", "<= 0.5"),
                                  ("splat first render (s)", "splat_first_render_s", "")):
            print(f"{name:34} {figures[key]!s:>9} {target:>9}")
    harness.print_figures({
        **figures,
        "first_render_s": round(first, 3), "next_item_s": round(next_med, 3), "kb_per_candidate": round(kb_cand, 1),
        "kb_per_item": round(item_kb, 1), "memory_flat": flat, "n_candidates": args.candidates,
        "first_render_all_s": [round(x, 3) for x in r["first"]], "next_item_all_s": [round(x, 3) for x in nxt],
    })


if __name__ == "__main__":
    main()
