"""Benchmark of the data lead dashboard on PostgreSQL (issue 7). Not a test: run it by hand.

    .venv/bin/python bench/dashboard.py [--judgements 1000000] [--items 100000] [--comparisons 2] [--calls 7]

It creates its own database (`engine_bench_dash`, dropped at the end), bulk-loads with COPY a
project of `--items` items (4 candidates each, from three checkpoints in a lineage), 100
annotators and `--judgements` judgements (each item judged by judgements/items annotators, over
30 days, with `--comparisons` king-of-the-hill comparisons each), then:
  1. runs the beat task `stats.rollups_refresh` once (its first run builds the rollups from
     scratch and fits the ratings) and times it, then an incremental refresh with nothing new;
  2. times every dashboard endpoint (REST figures, with and without filters, their CSV, the page,
     /metrics) through Django's test client as a (staff) lead: median of `--calls` calls after one warm-up
     call (the warm-up is reported too: the Elo fit and the worker inspect are cached).
It prints a table, then one JSON line (its last line) with "max_endpoint_ms".
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path

import harness
from harness import ROOT

DB_NAME = os.environ.get("BENCH_DASH_DB", "engine_bench_dash")
DB_URL = harness.database_url(DB_NAME)
ANNOTATORS = 100
DAYS = 30  # --days
# The 30 days end now, so that the live figures (last hour, last 24 h) have real work to do.
START = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=30)).replace(minute=0, second=0, microsecond=0)
# Checkpoints: v1 (the bootstrap), v2 (child of v1), v3 (child of v2), with these true strengths.
TRUE_ELO = {1: 1000.0, 2: 1080.0, 3: 1150.0}
ROUND_MIX = {1: (1, 1, 2, 2), 2: (1, 2, 3, 3), 3: (2, 3, 3, 3)}  # checkpoints of the 4 candidates
TIE_SHARE = 0.15


def load(n_items: int, n_judgements: int, n_comparisons: int) -> dict:
    """COPY everything in; returns ids the timing needs."""
    import psycopg

    rng = random.Random(7)
    per_item = max(1, n_judgements // n_items)
    assert per_item <= ANNOTATORS, "more judgements per item than annotators"
    now = START
    t0 = time.perf_counter()
    counts = {}
    with psycopg.connect(DB_URL) as conn:
        cur = conn.cursor()

        def copy(table, columns, rows):
            counts[table] = harness.copy_rows(cur, table, columns, rows)

        pw = "!"  # unusable password: nobody logs in to the bench database
        copy("auth_user", ["id", "password", "is_superuser", "username", "first_name", "last_name", "email",
                           "is_staff", "is_active", "date_joined"],
             # the lead is staff too, so that /metrics answers it
             [(k, pw, False, "lead" if k == ANNOTATORS + 1 else f"annotator{k:03d}", "", "", "",
               k == ANNOTATORS + 1, True, now) for k in range(1, ANNOTATORS + 2)])
        copy("engine_project", ["id", "name", "slug", "description", "candidates_per_item", "quality_threshold",
                                "overlap", "gold_rate", "lease_seconds", "ranking_protocol", "layout_stage",
                                "sampling_steps", "created_at"],
             [(1, "Bench (simulated judgements)", "bench", "", 4, 3, per_item, 0.05, 300, "king_of_the_hill", False, 4, now)])
        copy("engine_membership", ["project_id", "user_id", "role", "created_at"],
             [(1, k, "annotator", now) for k in range(1, ANNOTATORS + 1)] + [(1, ANNOTATORS + 1, "lead", now)])
        round_columns = {r[0] for r in cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'engine_round'")}
        extra = ["mix"] if "mix" in round_columns else []  # the checkpoint mix, where the schema has it
        copy("engine_round", ["id", "project_id", "index", "state", "quality_threshold", "opened_at"] + extra,
             [(r, 1, r, "closed" if r < 3 else "open", 2 + r, START + dt.timedelta(days=10 * (r - 1)))
              + (("[]",) if extra else ()) for r in (1, 2, 3)])
        ev = lambda f, v, c, r: json.dumps({"model": {"fscore@0.01": f, "voxel_iou@64": v, "chamfer": c,  # noqa: E731
                                                      "rotation_error_deg": r}})
        copy("modelzoo_checkpoint", ["id", "name", "version", "backend", "parent_id", "file", "sha256", "config",
                                     "recipe", "evaluation", "lineage", "public", "created_at"],
             [(1, "builtin", "v1", "builtin", None, "", "", "{}", "{}", ev(0.21, 0.38, 0.061, 24.0), "{}", True, now),
              (2, "builtin", "v2", "builtin", 1, "", "", "{}", "{}", ev(0.27, 0.45, 0.049, 17.5), "{}", False,
               now + dt.timedelta(days=10)),
              (3, "builtin", "v3", "builtin", 2, "", "", "{}", "{}", ev(0.33, 0.51, 0.041, 12.1), "{}", False,
               now + dt.timedelta(days=20))])
        # The mix of the open round: each checkpoint is the project's (and visible to it).
        copy("modelzoo_projectcheckpoint", ["project_id", "checkpoint_id", "share"], [(1, 1, 0.2), (1, 2, 0.3),
                                                                                     (1, 3, 0.5)])
        n_images = math.ceil(n_items / 4)
        copy("engine_image", ["id", "project_id", "file", "sha256", "width", "height", "format", "thumbnail",
                              "depth", "pointmap", "source_name", "source", "created_at"],
             ((k, 1, f"images/{k:064x}.png", f"{k:064x}", 640, 480, "png", "", "", "", f"p{k}.png", "{}", now)
              for k in range(1, n_images + 1)))
        copy("engine_objectmask", ["id", "image_id", "rle_counts", "rle_sha256", "bbox", "area", "label",
                                   "provenance", "created_at"],
             ((k, (k - 1) // 4 + 1, "PPYo0", f"{k:064x}", "[1, 1, 10, 10]", 100, "cup", "{}", now)
              for k in range(1, n_items + 1)))

        def round_of(item):  # items in three blocks: 40% round 1, 35% round 2, 25% round 3
            return 1 if item <= 0.40 * n_items else (2 if item <= 0.75 * n_items else 3)

        states = []
        for k in range(1, n_items + 1):
            r = round_of(k)
            if r < 3:
                states.append("hard_case" if rng.random() < 0.08 * (3 - r) else "done")
            else:
                states.append(rng.choices(["done", "ready", "in_progress", "waiting", "flagged", "hard_case"],
                                          [50, 30, 5, 10, 1, 4])[0])
        gold = set(rng.sample(range(1, n_items + 1), n_items // 20))
        copy("annotation_item", ["id", "project_id", "round_id", "mask_id", "state", "state_reason", "is_gold",
                                 "judgements_done", "claims", "skips", "hard_case", "created_at", "updated_at"],
             ((k, 1, round_of(k), k, states[k - 1], "", k in gold, per_item, per_item, 0,
               states[k - 1] == "hard_case", now, now) for k in range(1, n_items + 1)))
        copy("modelzoo_candidate", ["id", "item_id", "checkpoint_id", "seed", "steps", "glb", "glb_compact",
                                    "preview", "layout", "num_vertices", "num_faces", "timings", "created_at"],
             ((4 * (k - 1) + c + 1, k, ROUND_MIX[round_of(k)][c], c, 4, "c.glb", "", "", "{}", 100, 200, "{}", now)
              for k in range(1, n_items + 1) for c in range(4)))

        # Judgements: item k judged by per_item distinct annotators, in item order over DAYS days;
        # loaded in chunks (foreign keys are deferred to the commit).
        span = DAYS * 86400.0 / n_judgements
        challengers = [2, 3, 1][:n_comparisons]
        comp_id = 0
        totals = {"annotation_lease": 0, "annotation_judgement": 0, "annotation_comparison": 0}
        chunk = 100_000
        for first in range(1, n_judgements + 1, chunk):
            leases, judgements, comps = [], [], []
            for j in range(first, min(first + chunk, n_judgements + 1)):
                item = (j - 1) // per_item + 1
                slot = (j - 1) % per_item
                annotator = (item * 7 + slot * 13) % ANNOTATORS + 1
                created = START + dt.timedelta(seconds=(j - 1) * span + rng.random() * span)
                r = round_of(item)
                cands = [4 * (item - 1) + c + 1 for c in range(4)]
                ck = ROUND_MIX[r]
                king = 0
                for n, b in enumerate(challengers):
                    a = king
                    p = 1.0 / (1.0 + 10 ** ((TRUE_ELO[ck[b]] - TRUE_ELO[ck[a]]) / 400))
                    if rng.random() < TIE_SHARE:
                        outcome = "equal"
                    else:
                        a_wins = rng.random() < p
                        outcome = "left" if a_wins else "right"
                        king = a if a_wins else b
                    comp_id += 1
                    comps.append((comp_id, j, n + 1, cands[a], cands[b], outcome,
                                  int(rng.lognormvariate(8.0, 0.5))))
                rating = rng.choices([1, 2, 3, 4, 5], [3, 10, 30, 40, 17])[0]
                ms = int(rng.lognormvariate(10.1, 0.45))  # median about 24 s
                status = "rejected" if rng.random() < 0.02 else "accepted"
                gold_correct = (rng.random() < 0.8) if item in gold else None
                leases.append((j, 1, item, annotator, "submitted", j, json.dumps(cands), "[true, false, true]",
                               "king_of_the_hill", False, created - dt.timedelta(milliseconds=ms), created, created))
                judgements.append((j, 1, item, annotator, j, f"k{j}", "king_of_the_hill", cands[king], rating,
                                   rating < 2 + r, ms, gold_correct, status, "", created))
            copy("annotation_lease", ["id", "project_id", "item_id", "annotator_id", "state", "seed", "order",
                                      "sides", "protocol", "layout_stage", "created_at", "expires_at", "closed_at"],
                 leases)
            totals["annotation_lease"] += counts["annotation_lease"]
            copy("annotation_judgement", ["id", "project_id", "item_id", "annotator_id", "lease_id", "key",
                                          "protocol", "winner_id", "rating", "below_threshold", "time_spent_ms",
                                          "gold_correct", "status", "review_reason", "created_at"], judgements)
            totals["annotation_judgement"] += counts["annotation_judgement"]
            copy("annotation_comparison", ["id", "judgement_id", "index", "left_id", "right_id", "outcome",
                                           "decided_ms"], comps)
            totals["annotation_comparison"] += counts["annotation_comparison"]
        counts.update(totals)
        copy("modelzoo_generationjob", ["id", "project_id", "round_id", "state", "steps", "candidates_per_item",
                                        "mix", "total_items", "total_candidates", "started_at", "finished_at"],
             [(r, 1, r, "finished", 4, 4, "[]", n_items // 3, 4 * (n_items // 3), START + dt.timedelta(days=10 * r - 10),
               START + dt.timedelta(days=10 * r - 10, hours=3)) for r in (1, 2, 3)])
        copy("modelzoo_generationjobitem", ["job_id", "item_id", "plan", "state", "done", "attempts", "error",
                                            "updated_at"],
             ((round_of(k), k, "[]", "failed" if k % 97 == 0 else "done", 0 if k % 97 == 0 else 4, 1, "", now)
              for k in range(1, n_items + 1)))
        for table in ["auth_user", "engine_project", "engine_round", "modelzoo_checkpoint", "engine_image",
                      "engine_objectmask", "annotation_item", "modelzoo_candidate", "annotation_lease",
                      "annotation_judgement", "annotation_comparison", "modelzoo_generationjob",
                      "modelzoo_generationjobitem", "engine_membership"]:
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
        conn.commit()
    harness.sql("VACUUM ANALYZE", url=DB_URL)
    counts["load_seconds"] = round(time.perf_counter() - t0, 1)
    return counts


def median_ms(client, url: str, calls: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    first = client.get(url)
    cold = (time.perf_counter() - t0) * 1000
    assert first.status_code == 200, (url, first.status_code, first.content[:300])
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200, url
    return statistics.median(times), cold, len(first.content)


def screenshot(client, path: str) -> None:
    """Serve the app (runserver on a free port, this database) and photograph the dashboard."""
    import subprocess

    from playwright.sync_api import sync_playwright

    port = harness.free_port()
    env = dict(os.environ, DEBUG="1")
    server = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{port}"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        harness.wait_for_port("127.0.0.1", port)
        session = client.cookies["sessionid"].value
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader", "--disable-background-networking", "--disable-component-update"])
            context = browser.new_context(viewport={"width": 1360, "height": 2150}, device_scale_factor=1)
            context.add_cookies([{"name": "sessionid", "value": session, "domain": "127.0.0.1", "path": "/"}])
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/projects/bench/dashboard/", wait_until="load")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=path)  # the top of the page: figures, charts, the first annotators
            browser.close()
        print(f"screenshot: {path}", flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> int:
    global DAYS, START
    ap = argparse.ArgumentParser()
    ap.add_argument("--judgements", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--comparisons", type=int, default=2, help="comparisons per judgement")
    ap.add_argument("--calls", type=int, default=7)
    ap.add_argument("--days", type=int, default=DAYS, help="days the judgements are spread over, ending now")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--screenshot", metavar="PNG", help="also serve the page and save a headless-Chromium screenshot")
    args = ap.parse_args()
    DAYS = args.days
    START = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=DAYS)).replace(minute=0, second=0, microsecond=0)

    with harness.own_database(DB_NAME, keep=args.keep):
        result = measure(args)
    harness.print_figures(result)
    return 0


def measure(args) -> dict:
    """Load the database, refresh the rollups, time every endpoint; the figures of the JSON line."""
    migrate_s = harness.django_setup(database_url=DB_URL, environ={
        "CACHE_URL": os.environ.get("CACHE_URL", "redis://127.0.0.1:6379/11"),
        "ALLOWED_HOSTS": os.environ.get("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")})
    print(f"migrated in {migrate_s:.1f} s", flush=True)
    counts = load(args.items, args.judgements, args.comparisons)
    print(f"loaded in {counts['load_seconds']} s: " + ", ".join(f"{k}={v}" for k, v in counts.items()
                                                                 if k != "load_seconds"), flush=True)

    from django.core.cache import cache
    from django.test import Client
    from django.contrib.auth import get_user_model

    from engine.stats import services, tasks

    cache.clear()
    t0 = time.perf_counter()
    tasks.rollups_refresh()  # the beat task's body: first run builds everything, then fits the ratings
    backfill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    services.rollups_refresh()
    incremental_s = time.perf_counter() - t0
    from engine.stats.models import AnnotatorDay, PairDay, ProjectHour

    print(f"rollups: backfill {backfill_s:.1f} s, incremental refresh {incremental_s * 1000:.0f} ms; "
          f"{AnnotatorDay.objects.count()} annotator-days, {ProjectHour.objects.count()} project-hours, "
          f"{PairDay.objects.count()} pair-days", flush=True)

    client = Client()
    client.force_login(get_user_model().objects.get(username="lead"))
    base = "/api/v1/projects/bench/stats/"
    mid = (START + dt.timedelta(days=12)).date()
    urls = [
        base + "throughput", base + "throughput?round=2", base + "throughput?annotator=annotator007",
        base + f"throughput?since={mid}&until={mid + dt.timedelta(days=6)}",
        base + "queue", base + "timeseries?bucket=day", base + "timeseries?bucket=hour",
        base + "timeseries?bucket=day&annotator=annotator007",
        base + "annotators", base + "annotators?round=3", base + "annotators?format=csv",
        base + "acceptance/rounds", base + "acceptance/checkpoints",
        base + "ratings", base + "ratings?round=2", base + "ratings?format=csv",
        base + "generation", base + "workers",
        "/projects/bench/dashboard/", "/projects/bench/dashboard/?round=3&bucket=hour",
        "/metrics",
    ]
    rows = []
    for url in urls:
        med, cold, size = median_ms(client, url, args.calls)
        rows.append((url, med, cold, size))
        print(f"{url:<72} {med:8.1f} ms  (first call {cold:8.1f} ms, {size} bytes)", flush=True)
    elo = client.get(base + "ratings").json()
    print("\nElo: " + ", ".join(f"{c['checkpoint']} {c['elo']} [{c['ci_low']}, {c['ci_high']}]"
                                for c in elo["checkpoints"]) + f" (true: {TRUE_ELO})")
    worst = max(rows, key=lambda r: r[1])
    result = {
        "judgements": args.judgements, "items": args.items, "comparisons": counts["annotation_comparison"],
        "endpoints": len(rows), "calls_per_endpoint": args.calls,
        "max_endpoint_ms": round(worst[1], 1), "slowest_endpoint": worst[0],
        "median_endpoint_ms": round(statistics.median(r[1] for r in rows), 1),
        "max_first_call_ms": round(max(r[2] for r in rows), 1),
        "rollup_backfill_s": round(backfill_s, 1), "rollup_incremental_ms": round(incremental_s * 1000),
        "load_s": counts["load_seconds"],
        "elo": {c["checkpoint"]: c["elo"] for c in elo["checkpoints"]},
    }
    if args.screenshot:
        screenshot(client, args.screenshot)
    return result


if __name__ == "__main__":
    sys.exit(main())
